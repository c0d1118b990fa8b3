"""HTTP for the gateway clients: bounded time and size, redirects refused, faults made explicit.

Sync calls use ``httpx.Client``. Async calls go straight to an httpx transport on aiohttp
(``httpx-aiohttp``; httpcore's own async pool scans every connection per request and caps a
64-connection pool far below what one aiohttp pool does): ``httpx.Request`` in, ``httpx.Response``
out, without ``AsyncClient``'s per-request cookie jar, auth and redirect machinery, none of which a
gateway call uses (redirects are refused anyway). See README, Performance.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import httpx

from airflow_provider_sms.gateways.limits import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - aiohttp depends on async-timeout below 3.11
    from async_timeout import timeout as _timeout

DEFAULT_MAX_REPLY_BYTES = 1 << 20  # gateway replies are a few hundred bytes
MAX_REASON_CHARS = 300  # of a transport fault's message, in our error
# Gateway replies are a few hundred bytes: ask for them uncompressed (aiohttp offers gzip unless told),
# and still decode one that comes compressed anyway (a proxy that ignores the request).
IDENTITY = {"Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """How to reach a gateway. ``timeout`` bounds a whole call, reply included; ``ca_bundle`` (a PEM
    file) replaces the default CA certificates (certifi's) the gateway's certificate is checked against."""

    base_url: str
    timeout: float = DEFAULT_TIMEOUT
    verify: bool = True
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    ca_bundle: str | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"gateway host must start with http:// or https://, got {self.base_url!r}")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")

    @property
    def verify_certificates(self) -> bool:
        """Verify the gateway's certificate: on for https unless turned off. An http:// gateway (the
        sandbox, a relay on the host) never uses TLS, redirects being refused, so its clients skip
        loading the CA bundle (about 30 ms per client)."""
        return self.verify and self.base_url.startswith("https://")

    def tls(self) -> ssl.SSLContext | bool:
        """What httpx and httpx-aiohttp take as ``verify``."""
        if self.verify_certificates and self.ca_bundle:
            return ssl.create_default_context(cafile=self.ca_bundle)
        return self.verify_certificates


RawHeaders = tuple[tuple[bytes, bytes], ...]


def fixed_headers(url: httpx.URL, headers: Mapping[str, str]) -> RawHeaders:
    """``Host`` and ``headers``, encoded once: what every POST to ``url``'s host carries."""
    return tuple(httpx.Headers({"Host": url.netloc.decode("ascii"), **headers}).raw)


def post_request(url: httpx.URL, headers: RawHeaders, content: bytes) -> httpx.Request:
    """The request ``httpx.Request("POST", url, content=content, headers=...)`` builds, with the same
    headers in the same order, at half its cost: the fixed headers are not encoded and looked through
    again for every request (a bulk send builds one per batch)."""
    length = (b"Content-Length", b"%d" % len(content))
    request = httpx.Request("POST", url, headers=[*headers, length], stream=httpx.ByteStream(content))
    request.read()  # sets .content, which the transports send
    return request


class _ReplyTooLarge(Exception):
    pass


def _not_sent(exc: BaseException) -> bool:
    """True when ``exc`` proves the request never reached the gateway (connect failed, pool full)."""
    if isinstance(exc, (httpx.ConnectError, httpx.PoolTimeout, httpx.UnsupportedProtocol)):
        return True
    if isinstance(exc, httpx.ConnectTimeout):
        # httpx-aiohttp maps every aiohttp ClientConnectionError to ConnectTimeout, including a
        # server that dropped the connection after reading the request: look at the real cause.
        cause = exc.__cause__
        if cause is None:
            return True
        import aiohttp

        return isinstance(cause, (aiohttp.ClientConnectorError, asyncio.TimeoutError))
    return isinstance(exc, (httpx.WriteError, httpx.WriteTimeout))


def _reason(exc: BaseException) -> str:
    """The fault's own type and message, e.g. ``ClientConnectorCertificateError: ... certificate verify
    failed``: httpx-aiohttp names every aiohttp connection error ``ConnectTimeout``, so look at the cause."""
    from airflow_provider_sms.protocol.phones import mask_in_text

    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None else exc
    text = mask_in_text(" ".join(str(cause).split()))  # a garbled reply quoted in a parser's error
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS] + "..."
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def transport_error(exc: BaseException, method: str) -> Exception:
    """Turn an httpx/aiohttp fault into a :class:`TransportError` saying whether it is ambiguous."""
    from airflow_provider_sms.errors import TransportError

    if isinstance(exc, _ReplyTooLarge):
        return TransportError(f"{method}: {exc}", ambiguous=True, retryable=False)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not isinstance(exc, httpx.TimeoutException):
        return TransportError(f"{method}: no complete reply within the timeout", ambiguous=True)
    if not _not_sent(exc):
        return TransportError(
            f"{method}: {_reason(exc)}, after the request was sent; it may have been delivered",
            ambiguous=True,
        )
    return TransportError(f"{method}: {_reason(exc)}, before the request was sent", ambiguous=False)


def check_status(response: httpx.Response, method: str) -> None:
    """Refuse redirects and HTTP errors; 5xx and 429 are retryable, other statuses are not."""
    from airflow_provider_sms.errors import TransportError

    status = response.status_code
    if 300 <= status < 400:
        target = httpx.URL(response.headers.get("location", "")).host or "an unknown host"
        raise TransportError(
            f"{method}: HTTP {status} redirect to {target} refused (credentials are never sent to another"
            " address); set the connection host to the gateway's final address",
            ambiguous=False,
            retryable=False,
        )
    if status == 429 or status >= 500:
        wait = parse_retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        said = "" if wait is None else f", asked to retry after {wait:.0f} s"
        raise TransportError(f"{method}: HTTP {status} from gateway{said}", ambiguous=False, retry_after=wait)
    if status >= 400:
        raise TransportError(
            f"{method}: HTTP {status} from gateway (check the connection host)",
            ambiguous=False,
            retryable=False,
        )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date (a date already past
    is 0). None when absent or unreadable: then the retry policy's own backoff applies."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one came without a zone
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _compressed(response: httpx.Response) -> bool:
    return response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")


def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    """The reply's bytes, decoded if it came compressed anyway; read raw otherwise (the decoding
    iterator costs about 23 µs per reply, a twentieth of a bulk request's CPU)."""
    if _compressed(response):
        return response.aiter_bytes()
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):  # pragma: no cover - transport contract
        raise TypeError("the transport returned a sync stream")
    return stream.__aiter__()


def make_sync_client(settings: HttpSettings) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(settings.timeout),
        verify=settings.tls(),
        follow_redirects=False,
        trust_env=False,
    )


def make_async_transport(settings: HttpSettings, max_connections: int = 64) -> httpx.AsyncBaseTransport:
    """Call inside the event loop that will use it: the aiohttp session is built here."""
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=4.0
    )
    transport = AiohttpTransport(verify=settings.tls(), limits=limits, trust_env=False)
    # Build the session now rather than inside the first request, which would stall the event loop
    # (and a rate limiter's schedule) at the moment that request should leave.
    transport.client = transport.get_client()
    return transport


def post_sync(client: httpx.Client, settings: HttpSettings, request: httpx.Request, method: str) -> bytes:
    """Send ``request`` and return the reply body, within ``settings.timeout`` and size limit."""
    deadline = time.monotonic() + settings.timeout
    try:
        response = client.send(request, stream=True)
        try:
            check_status(response, method)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():  # decoded, as Content-Encoding says
                size += len(chunk)
                if size > settings.max_reply_bytes:
                    raise _ReplyTooLarge(f"reply larger than {settings.max_reply_bytes} bytes, refused")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError
            return b"".join(chunks)
        finally:
            response.close()
    except (httpx.TransportError, TimeoutError, _ReplyTooLarge) as exc:
        raise transport_error(exc, method) from exc


async def post_async(
    transport: httpx.AsyncBaseTransport, settings: HttpSettings, request: httpx.Request, method: str
) -> bytes:
    """Async twin of :func:`post_sync`; the whole call is bounded by ``settings.timeout``."""
    try:
        async with _timeout(settings.timeout):
            response = await transport.handle_async_request(request)
            try:
                check_status(response, method)
                chunks: list[bytes] = []
                size = 0
                async for chunk in _body(response):
                    size += len(chunk)
                    if size > settings.max_reply_bytes:
                        raise _ReplyTooLarge(f"reply larger than {settings.max_reply_bytes} bytes, refused")
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                await response.aclose()
    except (httpx.TransportError, TimeoutError, _ReplyTooLarge) as exc:
        raise transport_error(exc, method) from exc

"""What both gateway clients share: a lazily built sync httpx client and async transport, one call path."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

from airflow_provider_sms.errors import TransportError
from airflow_provider_sms.gateways import transport
from airflow_provider_sms.protocol.codes import CodeClass
from airflow_provider_sms.protocol.phones import mask_in_text
from airflow_provider_sms.protocol.replies import MalformedReply

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    import httpx
    from typing_extensions import Self

    from airflow_provider_sms.gateways.models import GatewayReply
    from airflow_provider_sms.gateways.transport import HttpSettings


class Closeable:
    """``with`` ends in ``close()``, ``async with`` in ``aclose()``."""

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class GatewayClient(Closeable):
    """Owns one ``httpx.Client`` and one async httpx transport (one connection pool each), built on use."""

    gateway = "gateway"
    # Reply fields that are the gateway's own ids or counts, read as numbers: never masked (a balance
    # of 13,912,345,678 has the shape of a mobile number). Any other field may echo the request.
    id_fields: frozenset[str] = frozenset()

    def __init__(self, settings: HttpSettings, *, max_connections: int = 64) -> None:
        self.settings = settings
        self.max_connections = max_connections
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncBaseTransport | None = None
        self._secrets: tuple[str, ...] = ()

    def _keep_secret(self, *secrets: str) -> None:
        """Secrets this client sends, as written and as they travel (URL-encoded): a gateway that echoes
        its request back must not put them in a log, an exception, a summary or a report."""
        forms = {form for secret in secrets if secret for form in (secret, quote_plus(secret), quote(secret))}
        self._secrets = tuple(sorted(forms, key=len, reverse=True))  # longest first: no partial leftovers

    def scrub(self, text: str) -> str:
        """``text`` as it may be shown: this client's secrets as ``***``, mobile numbers masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return mask_in_text(text)

    def _scrub_reply(self, reply: GatewayReply) -> GatewayReply:
        """Every reply passes here, so whatever shows the gateway's words gets them clean."""
        message = self.scrub(reply.message)
        # A documented code is one of our table's strings; an undocumented one is the gateway's text.
        code = self.scrub(reply.code) if reply.code_class is CodeClass.UNKNOWN else reply.code
        ids = {key: v if key in self.id_fields else mask_in_text(v) for key, v in reply.ids.items()}
        if message == reply.message and code == reply.code and ids == reply.ids:
            return reply
        return replace(reply, message=message, code=code, ids=ids)

    def _scrub_error(self, exc: TransportError) -> None:
        """A transport fault may quote what the gateway sent: clean its text in place."""
        exc.args = (self.scrub(str(exc)),)

    @property
    def http(self) -> httpx.Client:
        if self._sync is None:
            self._sync = transport.make_sync_client(self.settings)
        return self._sync

    @property
    def ahttp(self) -> httpx.AsyncBaseTransport:
        if self._async is None:
            self._async = transport.make_async_transport(self.settings, self.max_connections)
        return self._async

    async def warm_up(self) -> None:
        """Build the async transport now, so the first request does not pay for it at its send time."""
        self.ahttp  # noqa: B018 - the property builds and caches the transport

    def _parse(
        self, method: str, body: bytes, parse: Callable[[bytes], GatewayReply], *, is_send: bool
    ) -> GatewayReply:
        try:
            return self._scrub_reply(parse(body))
        except MalformedReply as exc:
            exc.args = (self.scrub(str(exc)),)  # it may quote the reply
            # After a send, a garbled reply does not say whether the message went out.
            raise TransportError(f"{self.gateway} {method}: {exc}", ambiguous=is_send) from exc

    def call(
        self, request: httpx.Request, method: str, parse: Callable[[bytes], GatewayReply], *, is_send: bool
    ) -> GatewayReply:
        try:
            body = transport.post_sync(self.http, self.settings, request, f"{self.gateway} {method}")
        except TransportError as exc:
            self._scrub_error(exc)
            raise
        return self._parse(method, body, parse, is_send=is_send)

    async def acall(
        self, request: httpx.Request, method: str, parse: Callable[[bytes], GatewayReply], *, is_send: bool
    ) -> GatewayReply:
        try:
            body = await transport.post_async(self.ahttp, self.settings, request, f"{self.gateway} {method}")
        except TransportError as exc:
            self._scrub_error(exc)
            raise
        return self._parse(method, body, parse, is_send=is_send)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None

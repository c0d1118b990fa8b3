"""What both gateway clients share: a lazily built sync httpx client and async transport, one call path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_sms.gateways import transport
from airflow_provider_sms.gateways.errors import TransportError
from airflow_provider_sms.protocol.replies import MalformedReply

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    import httpx

    from airflow_provider_sms.gateways.models import GatewayReply
    from airflow_provider_sms.gateways.transport import HttpSettings


class GatewayClient:
    """Owns one ``httpx.Client`` and one async httpx transport (one connection pool each), built on use."""

    gateway = "gateway"

    def __init__(self, settings: HttpSettings, *, max_connections: int = 64) -> None:
        self.settings = settings
        self.max_connections = max_connections
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncBaseTransport | None = None

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
            return parse(body)
        except MalformedReply as exc:
            # After a send, a garbled reply does not say whether the message went out.
            raise TransportError(f"{self.gateway} {method}: {exc}", ambiguous=is_send) from exc

    def call(
        self, request: httpx.Request, method: str, parse: Callable[[bytes], GatewayReply], *, is_send: bool
    ) -> GatewayReply:
        body = transport.post_sync(self.http, self.settings, request, f"{self.gateway} {method}")
        return self._parse(method, body, parse, is_send=is_send)

    async def acall(
        self, request: httpx.Request, method: str, parse: Callable[[bytes], GatewayReply], *, is_send: bool
    ) -> GatewayReply:
        body = await transport.post_async(self.ahttp, self.settings, request, f"{self.gateway} {method}")
        return self._parse(method, body, parse, is_send=is_send)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

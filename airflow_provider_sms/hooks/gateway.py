"""What both gateway hooks share: the Connection read once, a client the hook owns and closes, bulk sends.

Use a hook as a context manager (``with IhuyiHook() as hook:``) or call :meth:`GatewayHook.close`
(``aclose`` in async code) when done, as with Airflow's ``SmtpHook``. A bulk send runs on a client of
its own, pooled for the campaign's concurrency and closed when the campaign ends.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.gateways.base import Closeable, GatewayClient
from airflow_provider_sms.hooks.campaign import campaign_options, resolve_rows, run_bulk
from airflow_provider_sms.hooks.connection import ConnectionFields, check_per_request, mask_secrets
from airflow_provider_sms.protocol.phones import normalize_all

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.dispatch.policy import ContactPolicy
    from airflow_provider_sms.dispatch.recipients import Cleaner
    from airflow_provider_sms.dispatch.senders import BatchSender
    from airflow_provider_sms.dispatch.settings import SendSettings
    from airflow_provider_sms.gateways.limits import PerRequest
    from airflow_provider_sms.hooks.campaign import LedgerSource

Client = TypeVar("Client", bound=GatewayClient)


class GatewayHook(BaseHook, Closeable, Generic[Client]):
    """A Connection in, a configured gateway client out; subclasses say how the client is built."""

    conn_name_attr: ClassVar[str]
    conn_type: ClassVar[str]
    numbers_per_request: ClassVar[PerRequest]
    secret_extras: ClassVar[tuple[str, ...]] = ()  # extras that are secrets, masked like the password
    bulk_hint: ClassVar[str] = ""  # what to use for more numbers than one request takes

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client: Client | None = None
        self.secrets: tuple[str, ...] = ()  # the Connection's secrets, once it was read

    @property
    def conn_id(self) -> str:
        return str(getattr(self, self.conn_name_attr))

    @cached_property
    def fields(self) -> ConnectionFields:
        fields = ConnectionFields(self.get_connection(self.conn_id), self.conn_type)
        found = (fields.conn.password, *(fields.text(key) for key in self.secret_extras))
        self.secrets = tuple(secret for secret in found if secret)
        mask_secrets(*self.secrets)
        return fields

    @cached_property
    def tuning(self) -> SendSettings:
        """The connection's send settings, with the gateway's numbers per request."""
        return self.fields.tuning(self.numbers_per_request)

    def build_client(self, max_connections: int) -> Client:
        """A new client from the Connection, with a pool of ``max_connections``."""
        raise NotImplementedError

    @property
    def client(self) -> Client:
        """The hook's client, built on first use, pooled for the connection's ``concurrency``."""
        if self._client is None:
            self._client = self.build_client(self.tuning.concurrency)
        return self._client

    def get_conn(self) -> Client:
        return self.client

    def close(self) -> None:
        """Close the client's connections (a hook used again builds a new client)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the client's connections, the async pool's too."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
            await client.aclose()

    def one_request(self, mobiles: Any) -> list[str]:
        """``mobiles`` normalised and deduplicated, refused whole if any is invalid or if they are more than
        one request takes."""
        numbers = normalize_all(mobiles)
        limit = check_per_request(self.tuning.numbers_per_request, self.numbers_per_request.maximum)
        if len(numbers) > limit:
            raise InvalidInputError(
                f"{len(numbers)} numbers exceed one request ({limit}); "
                f"use {self.bulk_hint} for larger audiences"
            )
        return numbers

    def per_request(self, settings: SendSettings) -> int:
        return check_per_request(settings.numbers_per_request, self.numbers_per_request.maximum)

    def run_campaign(
        self,
        make_sender: Callable[[Client], BatchSender],
        recipients: Any,
        cleaner: Callable[[], Cleaner],
        settings: SendSettings,
        *,
        preflight: Callable[[Client], Callable[[int], Awaitable[None]]] | None = None,
        policy: ContactPolicy | None = None,
        ledger: LedgerSource = None,
        campaign: str = "",
    ) -> Summary:
        """Run a bulk send on a client of its own, pooled for ``settings.concurrency`` (the campaign
        closes it when it ends). ``preflight`` makes the check the campaign runs before its first request."""
        rows = resolve_rows(recipients, settings.encoding)
        cleaner()  # refuses shared params that are not text or numbers, before anything is sent
        client = self.build_client(settings.concurrency)
        try:
            options = campaign_options(settings, preflight(client) if preflight else None, policy)
            return run_bulk(
                make_sender(client),
                rows,
                cleaner,
                options,
                settings,
                ledger=ledger,
                log=self.log,
                campaign=campaign,
            )
        finally:
            client.close()

"""Hook for the ihuyi MMS platform: send MMS, query the balance, upload MMS templates."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_sms.dispatch.recipients import Cleaner
from airflow_provider_sms.dispatch.senders import MmsSender
from airflow_provider_sms.dispatch.settings import SendSettings
from airflow_provider_sms.gateways import ihuyi
from airflow_provider_sms.gateways.errors import (
    GatewayError,
    InsufficientBalanceError,
    InvalidInputError,
    raise_for_reply,
)
from airflow_provider_sms.hooks.bulk import campaign_options, resolve_rows, run_bulk
from airflow_provider_sms.hooks.policy import check_send_time, contact_policy
from airflow_provider_sms.hooks.settings import ConnectionFields, check_per_request, mask_secrets
from airflow_provider_sms.protocol import phones
from airflow_provider_sms.protocol.sendtime import format_send_time

if TYPE_CHECKING:
    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.gateways.models import GatewayReply
    from airflow_provider_sms.hooks.bulk import LedgerSource

DEFAULT_NUMBERS_PER_REQUEST = 100
MAX_NUMBERS_PER_REQUEST = 1000


def normalize_all(mobiles: str | int | list[str] | list[int] | tuple[str, ...] | None) -> list[str]:
    """Normalise and dedupe for a single call; any invalid number refuses the whole call."""
    raw = phones.split_numbers(mobiles)
    if not raw:
        raise InvalidInputError("no phone number given")
    good: dict[str, None] = {}
    bad: list[str] = []
    for value in raw:
        try:
            good[phones.normalize(value)] = None
        except phones.InvalidPhoneNumber as exc:
            bad.append(f"{exc.masked} ({exc.reason})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InvalidInputError(f"{len(bad)} invalid phone number(s): {shown}")
    return list(good)


class IhuyiHook(BaseHook):
    """Talk to ihuyi with the credentials of an Airflow Connection of type ``ihuyi``.

    login = account (APIID), password = API key; extras: ``pid`` (default product id), ``timeout``,
    ``numbers_per_request``, ``concurrency``, ``requests_per_second``, ``verify_tls``.
    """

    conn_name_attr = "ihuyi_conn_id"
    default_conn_name = "ihuyi_default"
    conn_type = "ihuyi"
    hook_name = "ihuyi MMS"

    def __init__(self, ihuyi_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ihuyi_conn_id = ihuyi_conn_id

    @cached_property
    def fields(self) -> ConnectionFields:
        fields = ConnectionFields(self.get_connection(self.ihuyi_conn_id), self.conn_type)
        mask_secrets(fields.conn.password)
        return fields

    @cached_property
    def tuning(self) -> SendSettings:
        return self.fields.tuning(DEFAULT_NUMBERS_PER_REQUEST, MAX_NUMBERS_PER_REQUEST)

    @cached_property
    def client(self) -> ihuyi.IhuyiClient:
        """The gateway client, built once from the Connection."""
        f = self.fields
        pid = f.checked_extras().pid
        settings = f.http_settings(ihuyi.DEFAULT_HOST)
        return ihuyi.IhuyiClient(
            f.required(f.conn.login, "login (ihuyi account / APIID)"),
            f.required(f.conn.password, "password (ihuyi API key)"),
            settings,
            default_pid=pid,
            max_connections=self.tuning.concurrency,
        )

    def get_conn(self) -> ihuyi.IhuyiClient:
        return self.client

    def _prepare_send(
        self, mobiles: str | list[str], mmsid: str | int, send_time: Any
    ) -> tuple[list[str], str, str]:
        numbers = normalize_all(mobiles)
        limit = check_per_request(self.tuning.numbers_per_request, MAX_NUMBERS_PER_REQUEST)
        if len(numbers) > limit:
            raise InvalidInputError(
                f"{len(numbers)} numbers exceed one request ({limit}); "
                "use MmsSendOperator or IhuyiHook.send_bulk for larger audiences"
            )
        try:
            when = format_send_time(send_time)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        return numbers, str(mmsid), when

    def send_mms(
        self, mobiles: str | list[str], mmsid: str | int, pid: int | None = None, send_time: Any = None
    ) -> GatewayReply:
        """Send template ``mmsid`` to ``mobiles`` in one request; raise the error of any non-success code."""
        numbers, template, when = self._prepare_send(mobiles, mmsid, send_time)
        reply = raise_for_reply(self.client.send_mms(numbers, template, pid, when))
        self.log.info(
            "ihuyi accepted MMS %s for %d number(s), send id %s",
            template,
            len(numbers),
            reply.ids.get("mmsid", "-"),
        )
        return reply

    async def asend_mms(
        self, mobiles: str | list[str], mmsid: str | int, pid: int | None = None, send_time: Any = None
    ) -> GatewayReply:
        numbers, template, when = self._prepare_send(mobiles, mmsid, send_time)
        return raise_for_reply(await self.client.asend_mms(numbers, template, pid, when))

    def get_balance(self) -> int:
        """Remaining message count of the account (``GetNum``)."""
        return int(raise_for_reply(self.client.get_num()).ids["num"])

    async def aget_balance(self) -> int:
        return int(raise_for_reply(await self.client.aget_num()).ids["num"])

    def create_mms_template(self, title: str, zip_bytes: bytes) -> str:
        """Upload a template zip (see ``protocol.mms_package``) and return the new template id."""
        reply = raise_for_reply(self.client.create_mms(title, zip_bytes))
        self.log.info("ihuyi created MMS template %s (%r)", reply.ids["mmsid"], title)
        return reply.ids["mmsid"]

    def send_bulk(
        self,
        recipients: Any,
        mmsid: str | int,
        pid: int | None = None,
        send_time: Any = None,
        *,
        bulk: SendSettings | None = None,
        check_balance: bool = False,
        ledger: LedgerSource = None,
        campaign: str = "",
    ) -> Summary:
        """Send template ``mmsid`` to any number of recipients (list, string, CSV/JSONL/JSON file URI)
        through the bulk engine: batches, concurrency, rate limit, retries, ledger. Returns the summary.

        ``bulk``: this send's settings, over the connection's (where given). ``check_balance`` (or
        ``bulk.check_balance``): before the first request, fail (sending nothing) unless the balance
        covers the recipients still to send.
        """
        settings = (bulk or SendSettings()).over(self.tuning)
        per_request = check_per_request(settings.numbers_per_request, MAX_NUMBERS_PER_REQUEST)
        try:
            when = format_send_time(send_time)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        rows = resolve_rows(recipients, settings.encoding)
        sender = MmsSender(
            self.client,
            str(mmsid).strip(),
            pid=pid,
            send_time=when,
            numbers_per_request=per_request,
        )

        async def guard(needed: int) -> None:
            balance = await self.aget_balance()
            self.log.info("Balance guard: %d message(s) left, %d needed", balance, needed)
            if balance < needed:
                raise InsufficientBalanceError(
                    f"ihuyi balance {balance} does not cover {needed} recipient(s); nothing was sent"
                )

        policy = contact_policy(settings, scheduled=check_send_time(settings, send_time))
        options = campaign_options(
            settings,
            guard if (check_balance or settings.check_balance) and not settings.dry_run else None,
            policy,
        )
        self.client.max_connections = options.concurrency  # one per request in flight, not the extra's
        return run_bulk(
            sender,
            rows,
            lambda: Cleaner(use_params=False),
            options,
            settings,
            ledger=ledger,
            log=self.log,
            campaign=campaign,
        )

    def test_connection(self) -> tuple[bool, str]:
        """A balance query: proves host, account and password without sending anything."""
        try:
            balance = self.get_balance()
        except (GatewayError, InvalidInputError, ValueError) as exc:
            return False, str(exc)
        finally:
            if "client" in self.__dict__:  # built: a config error fails before it is
                self.client.close()
        return True, f"Connection to ihuyi works: the account has {balance} message(s) left."

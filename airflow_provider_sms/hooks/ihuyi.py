"""Hook for the ihuyi MMS platform: send MMS, query the balance, upload MMS templates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_sms.dispatch.recipients import Cleaner
from airflow_provider_sms.dispatch.senders import MmsSender
from airflow_provider_sms.dispatch.settings import SendSettings
from airflow_provider_sms.errors import InsufficientBalanceError, InvalidInputError, SmsProviderError
from airflow_provider_sms.gateways import ihuyi
from airflow_provider_sms.gateways.limits import IHUYI_NUMBERS_PER_REQUEST
from airflow_provider_sms.gateways.models import raise_for_reply
from airflow_provider_sms.hooks.gateway import GatewayHook
from airflow_provider_sms.hooks.policy import check_send_time, contact_policy
from airflow_provider_sms.protocol.sendtime import format_send_time

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.gateways.models import GatewayReply
    from airflow_provider_sms.hooks.campaign import LedgerSource


def _send_time(value: Any) -> str:
    try:
        return format_send_time(value)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None


class IhuyiHook(GatewayHook[ihuyi.IhuyiClient]):
    """Talk to ihuyi with the credentials of an Airflow Connection of type ``ihuyi``.

    login = account (APIID), password = API key; extras: ``pid`` (default product id), ``timeout``,
    ``numbers_per_request``, ``concurrency``, ``requests_per_second``, ``verify_tls``.
    """

    conn_name_attr = "ihuyi_conn_id"
    default_conn_name = "ihuyi_default"
    conn_type = "ihuyi"
    hook_name = "ihuyi MMS"
    numbers_per_request = IHUYI_NUMBERS_PER_REQUEST
    bulk_hint = "MmsSendOperator or IhuyiHook.send_bulk"

    def __init__(self, ihuyi_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ihuyi_conn_id = ihuyi_conn_id

    def build_client(self, max_connections: int) -> ihuyi.IhuyiClient:
        f = self.fields
        pid = f.checked_extras().pid
        settings = f.http_settings(ihuyi.DEFAULT_HOST)
        return ihuyi.IhuyiClient(
            f.required(f.conn.login, "login (ihuyi account / APIID)"),
            f.required(f.conn.password, "password (ihuyi API key)"),
            settings,
            default_pid=pid,
            max_connections=max_connections,
        )

    def _prepare_send(
        self, mobiles: str | list[str], mmsid: str | int, send_time: Any
    ) -> tuple[list[str], str, str]:
        return self.one_request(mobiles), str(mmsid), _send_time(send_time)

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
        per_request = self.per_request(settings)
        when = _send_time(send_time)
        policy = contact_policy(settings, scheduled=check_send_time(settings, send_time))

        def guard(client: ihuyi.IhuyiClient) -> Callable[[int], Awaitable[None]]:
            async def check(needed: int) -> None:
                balance = int(raise_for_reply(await client.aget_num()).ids["num"])
                self.log.info("Balance guard: %d message(s) left, %d needed", balance, needed)
                if balance < needed:
                    raise InsufficientBalanceError(
                        f"ihuyi balance {balance} does not cover {needed} recipient(s); nothing was sent"
                    )

            return check

        guarded = (check_balance or settings.check_balance) and not settings.dry_run
        return self.run_campaign(
            lambda client: MmsSender(
                client, str(mmsid).strip(), pid=pid, send_time=when, numbers_per_request=per_request
            ),
            recipients,
            lambda: Cleaner(use_params=False),
            settings,
            preflight=guard if guarded else None,
            policy=policy,
            ledger=ledger,
            campaign=campaign,
        )

    def test_connection(self) -> tuple[bool, str]:
        """A balance query: proves host, account and password without sending anything."""
        try:
            with self:
                balance = self.get_balance()
        except (SmsProviderError, ValueError) as exc:
            return False, str(exc)
        return True, f"Connection to ihuyi works: the account has {balance} message(s) left."

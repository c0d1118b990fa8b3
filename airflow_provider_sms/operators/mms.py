"""Send an ihuyi MMS template to an audience of any size."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_sms.operators.bulk import BULK_TEMPLATE_FIELDS, BulkSendOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context, XComArg

    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.dispatch.settings import SendSettings
    from airflow_provider_sms.hooks.campaign import LedgerSource
    from airflow_provider_sms.hooks.ihuyi import IhuyiHook


class MmsSendOperator(BulkSendOperator):
    """Send MMS template ``mmsid`` to ``recipients`` through ihuyi, with the bulk engine.

    :param recipients: numbers (list, or one comma-separated string), rows from an XCom, or a CSV / JSON
        Lines file path or URI (a ``phone`` column; other columns are ignored for MMS).
    :param mmsid: the template id (e.g. ``upload.output`` from :class:`MmsTemplateUploadOperator`).
    :param pid: product id (a whole number, 0 or more); default from the connection's ``pid`` extra.
    :param send_time: ``YYYY-MM-DD HH:MM:SS`` Beijing time, or a datetime; empty sends now.
    :param check_balance: before the first request, fail without sending unless the balance covers
        the audience.
    Bulk parameters (concurrency, rate, report, ledger, policy): see :class:`BulkSendOperator`.
    """

    template_fields: Sequence[str] = (
        "recipients",
        "mmsid",
        "pid",
        "send_time",
        "ihuyi_conn_id",
        "check_balance",
        *BULK_TEMPLATE_FIELDS,
    )

    def __init__(
        self,
        *,
        mmsid: str | int | XComArg,
        pid: int | str | None = None,
        send_time: Any = None,
        ihuyi_conn_id: str = "ihuyi_default",
        check_balance: bool | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mmsid = mmsid
        self.pid = pid
        self.send_time = send_time
        self.ihuyi_conn_id = ihuyi_conn_id
        self.check_balance = check_balance

    @cached_property
    def hook(self) -> IhuyiHook:
        from airflow_provider_sms.hooks.ihuyi import IhuyiHook

        return IhuyiHook(ihuyi_conn_id=self.ihuyi_conn_id)

    def given_settings(self) -> dict[str, Any]:
        return {**super().given_settings(), "check_balance": self.check_balance}

    def bulk_settings(self) -> SendSettings:
        """The send settings, with ``pid`` checked first (the rule of the connection's ``pid`` extra)."""
        from airflow_provider_sms.dispatch.settings import ConnectionExtras, validate

        validate(ConnectionExtras, {"pid": self.pid}, what="invalid send settings: ")
        return super().bulk_settings()

    def send(self, context: Context, bulk: SendSettings, ledger: LedgerSource) -> Summary:
        from airflow_provider_sms.dispatch.settings import ConnectionExtras, validate

        with self.hook as hook:
            return hook.send_bulk(
                self.audience(),
                str(self.mmsid),  # rendered by now (an XComArg resolves to the id)
                validate(ConnectionExtras, {"pid": self.pid}).pid,
                self.send_time or None,
                bulk=bulk,
                ledger=ledger,
                campaign=self.campaign_key(context),
            )

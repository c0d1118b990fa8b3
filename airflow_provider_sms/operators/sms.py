"""Send a juncdt templated SMS, shared or personalised, to an audience of any size."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_sms.operators.bulk import BULK_TEMPLATE_FIELDS, BulkSendOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.dispatch.settings import SendSettings
    from airflow_provider_sms.hooks.campaign import LedgerSource
    from airflow_provider_sms.hooks.juncdt import JuncdtHook


class SmsSendOperator(BulkSendOperator):
    """Send juncdt template ``template_code`` to ``recipients``, with the bulk engine.

    :param recipients: numbers, or ``{"phone": ..., "params": {...}}`` rows for personalised messages
        (row params override the shared ``template_params``), from a list or an XCom, or a CSV (a
        ``phone`` column, other columns are params) / JSON Lines file path or URI.
    :param template_params: template variables shared by everyone (values may use Jinja).
    :param sign_code: approved signature; default from the connection's ``sign_code`` extra.
    :param param_names: the template's variable names: every row is checked against them before
        any request. Without it, rows must all carry the names of the first row.
    :param template_text: the template's text with ``${name}`` placeholders, if you have it: names are
        taken from it and each message is checked against the 300-character limit before sending.
    Bulk parameters (concurrency, rate, report, ledger, policy): see :class:`BulkSendOperator`.
    """

    template_fields: Sequence[str] = (
        "recipients",
        "template_code",
        "sign_code",
        "template_params",
        "juncdt_conn_id",
        *BULK_TEMPLATE_FIELDS,
    )
    template_fields_renderers = {"recipients": "json", "template_params": "json"}  # noqa: RUF012

    def __init__(
        self,
        *,
        template_code: str,
        sign_code: str | None = None,
        template_params: dict[str, Any] | None = None,
        param_names: list[str] | None = None,
        template_text: str | None = None,
        juncdt_conn_id: str = "juncdt_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.template_code = template_code
        self.sign_code = sign_code
        self.template_params: dict[str, Any] = dict(template_params or {})
        self.param_names = param_names
        self.template_text = template_text
        self.juncdt_conn_id = juncdt_conn_id

    @cached_property
    def hook(self) -> JuncdtHook:
        from airflow_provider_sms.hooks.juncdt import JuncdtHook

        return JuncdtHook(juncdt_conn_id=self.juncdt_conn_id)

    def send(self, context: Context, bulk: SendSettings, ledger: LedgerSource) -> Summary:
        with self.hook as hook:
            return hook.send_bulk(
                self.audience(),
                self.template_code,
                self.template_params,
                self.sign_code or None,
                param_names=self.param_names,
                template_text=self.template_text,
                bulk=bulk,
                ledger=ledger,
                campaign=self.campaign_key(context),
            )

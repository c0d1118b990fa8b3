"""Send a juncdt templated SMS, shared or personalised, to an audience of any size."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_sms.operators.bulk import BULK_TEMPLATE_FIELDS, BulkSendOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_sms.dispatch.ledger import Ledger
    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.hooks.bulk import BulkSettings


class SmsSendOperator(BulkSendOperator):
    """Send juncdt template ``template_code`` to ``recipients``, with the bulk engine.

    :param recipients: numbers, or ``{"phone": ..., "params": {...}}`` rows for personalised messages
        (row params override the shared ``params``), from a list or an XCom, or a CSV (a ``phone``
        column, other columns are params) / JSON Lines file path or URI.
    :param params: template variables shared by everyone.
    :param sign_code: approved signature; default from the connection's ``sign_code`` extra.
    :param template_params: the template's variable names: every row is checked against them before
        any request. Without it, rows must all carry the names of the first row.
    :param template_text: the template's text with ``${name}`` placeholders, if you have it: names are
        taken from it and each message is checked against the 300-character limit before sending.
    Bulk parameters (concurrency, rate, report, ledger, policy): see :class:`BulkSendOperator`.
    """

    template_fields: Sequence[str] = (
        "recipients",
        "template_code",
        "sign_code",
        "params",
        "juncdt_conn_id",
        *BULK_TEMPLATE_FIELDS,
    )
    template_fields_renderers = {"recipients": "json", "params": "json"}  # noqa: RUF012

    def __init__(
        self,
        *,
        recipients: Any,
        template_code: str,
        sign_code: str | None = None,
        params: dict[str, Any] | None = None,
        template_params: list[str] | None = None,
        template_text: str | None = None,
        juncdt_conn_id: str = "juncdt_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recipients = recipients
        self.template_code = template_code
        self.sign_code = sign_code
        self.params = params
        self.template_params = template_params
        self.template_text = template_text
        self.juncdt_conn_id = juncdt_conn_id

    def send(self, context: Context, bulk: BulkSettings, ledger: Ledger | None) -> Summary:
        from airflow_provider_sms.hooks.juncdt import JuncdtHook

        hook = JuncdtHook(juncdt_conn_id=self.juncdt_conn_id)
        return hook.send_bulk(
            self.recipients,
            self.template_code,
            self.params,
            self.sign_code or None,
            template_params=self.template_params,
            template_text=self.template_text,
            bulk=bulk,
            ledger=ledger,
            campaign=self.campaign_key(context),
        )

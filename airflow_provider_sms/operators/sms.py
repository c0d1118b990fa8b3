"""Send a juncdt templated SMS, shared or personalised, to an audience of any size."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.definitions.param import ParamsDict

from airflow_provider_sms.operators.bulk import BULK_TEMPLATE_FIELDS, BulkSendOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.dispatch.settings import SendSettings
    from airflow_provider_sms.hooks.campaign import LedgerSource


class SmsSendOperator(BulkSendOperator):
    """Send juncdt template ``template_code`` to ``recipients``, with the bulk engine.

    :param recipients: numbers, or ``{"phone": ..., "params": {...}}`` rows for personalised messages
        (row params override the shared ``params``), from a list or an XCom, or a CSV (a ``phone``
        column, other columns are params) / JSON Lines file path or URI.
    :param params: template variables shared by everyone (values may use Jinja). Airflow also keeps
        them as the task's Params; DAG-level Params are not sent.
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
        "sms_params",
        "juncdt_conn_id",
        *BULK_TEMPLATE_FIELDS,
    )
    template_fields_renderers = {"recipients": "json", "sms_params": "json"}  # noqa: RUF012
    audience_field = "recipients"

    def __init__(
        self,
        *,
        recipients: Any,
        template_code: str,
        sign_code: str | None = None,
        params: dict[str, Any] | None = None,
        param_names: list[str] | None = None,
        template_text: str | None = None,
        juncdt_conn_id: str = "juncdt_default",
        **kwargs: Any,
    ) -> None:
        # Airflow owns ``params`` on every operator (Params, merged with the DAG's): keep it for them,
        # and take as template variables only what was given to this task.
        super().__init__(params=params, **kwargs)
        self.recipients = recipients
        self.template_code = template_code
        self.sign_code = sign_code
        task_params = ParamsDict.filter_params_by_source(ParamsDict(self.params), "task") if params else {}
        self.sms_params: dict[str, Any] = {key: task_params[key] for key in task_params}
        self.param_names = param_names
        self.template_text = template_text
        self.juncdt_conn_id = juncdt_conn_id

    def send(self, context: Context, bulk: SendSettings, ledger: LedgerSource) -> Summary:
        from airflow_provider_sms.hooks.juncdt import JuncdtHook

        hook = JuncdtHook(juncdt_conn_id=self.juncdt_conn_id)
        return hook.send_bulk(
            self.audience(),
            self.template_code,
            self.sms_params,
            self.sign_code or None,
            param_names=self.param_names,
            template_text=self.template_text,
            bulk=bulk,
            ledger=ledger,
            campaign=self.campaign_key(context),
        )

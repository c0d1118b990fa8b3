"""Text the on-call person when a task fails (or succeeds), through juncdt.

Imports stay light at DAG-parse time: the hook (httpx) loads when a notification is sent.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from airflow_provider_sms.templating import RendersQuietly

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_sms.hooks.juncdt import JuncdtHook

DEFAULT_PARAMS: dict[str, str] = {
    "dag": "{{ dag.dag_id }}",
    "task": "{{ ti.task_id }}",
    "try": "{{ ti.try_number }}",
    "url": "{{ ti.log_url }}",
}
"""Default template variables, rendered from the callback context.

They match the names of the sandbox's alert template ``TPL_ALERT``. juncdt refuses a request whose
variables do not match the template's (code 30014), so pass ``params`` for any other template.
"""


class SmsNotifier(RendersQuietly, BaseNotifier):
    """Send one templated juncdt SMS per phone, as an ``on_failure_callback`` / ``on_success_callback``.

    :param phones: one number, a comma-separated string, or a list (templated).
    :param template_code: approved juncdt template code (templated).
    :param params: template variables (templated); default :data:`DEFAULT_PARAMS`.
    :param sign_code: approved signature code; default from the connection's ``sign_code`` extra.
    :param juncdt_conn_id: the juncdt connection.

    A notification that cannot be sent never raises: the task's own outcome and error must stay what
    they were. Failures are logged with the numbers masked.
    """

    template_fields: Sequence[str] = ("phones", "template_code", "params", "sign_code")
    quiet_field = "phones"  # if its template fails, Airflow would log the numbers

    def __init__(
        self,
        *,
        phones: str | list[str],
        template_code: str,
        params: dict[str, str] | None = None,
        sign_code: str | None = None,
        juncdt_conn_id: str = "juncdt_default",
    ) -> None:
        super().__init__()
        self.phones = phones
        self.template_code = template_code
        self.params = dict(DEFAULT_PARAMS) if params is None else params
        self.sign_code = sign_code
        self.juncdt_conn_id = juncdt_conn_id

    @cached_property
    def hook(self) -> JuncdtHook:
        from airflow_provider_sms.hooks.juncdt import JuncdtHook

        return JuncdtHook(juncdt_conn_id=self.juncdt_conn_id)

    def __call__(self, *args: Any) -> None:
        # Rendering happens before notify(): a template error must not escape either.
        try:
            super().__call__(*args)
        except Exception as exc:
            self.log.error("SMS notification not sent: %s: %s", type(exc).__name__, self._scrub(str(exc)))

    def notify(self, context: Context) -> None:
        try:
            self._send_all()
        except Exception as exc:
            self.log.error("SMS notification not sent: %s: %s", type(exc).__name__, self._scrub(str(exc)))

    def _numbers(self) -> list[str]:
        from airflow_provider_sms.protocol.phones import split_numbers

        raw = split_numbers(self.phones)
        return list(dict.fromkeys(str(value).strip() for value in raw))

    def _scrub(self, text: str) -> str:
        """Mask any of our numbers that an error message may carry."""
        from airflow_provider_sms.protocol.phones import mask

        for number in self._numbers():
            text = text.replace(number, mask(number))
        return text

    def _send_all(self) -> None:
        from airflow_provider_sms.protocol.phones import mask

        numbers = self._numbers()
        if not numbers:
            self.log.error("SMS notification not sent: no phone number given")
            return
        params = {str(k): str(v) for k, v in (self.params or {}).items()}
        sent = 0
        with self.hook as hook:
            for number in numbers:  # one request per phone: one bad number does not silence the others
                try:
                    hook.send_sms(number, self.template_code, params, self.sign_code or None)
                    sent += 1
                except Exception as exc:
                    self.log.error(
                        "SMS notification to %s failed: %s: %s",
                        mask(number),
                        type(exc).__name__,
                        self._scrub(str(exc)),
                    )
        level = logging.INFO if sent == len(numbers) else logging.WARNING
        self.log.log(
            level, "SMS notification %s sent to %d of %d phone(s)", self.template_code, sent, len(numbers)
        )


def send_sms_notification(**kwargs: Any) -> SmsNotifier:
    """Callback factory in the style of Airflow's ``send_slack_notification``: same arguments as
    :class:`SmsNotifier`."""
    return SmsNotifier(**kwargs)

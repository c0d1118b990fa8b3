"""DAGs for the contact-policy tests; each task reads its policy settings from the run's conf."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import DAG, task

from airflow_provider_sms.operators.mms import MmsSendOperator
from airflow_provider_sms.operators.sms import SmsSendOperator


def _conf(name: str) -> str:
    return f"{{{{ dag_run.conf.get('{name}', '') }}}}"


POLICY = {
    name: _conf(name)
    for name in (  # the settings a test may give (not given: the connection's, else the default)
        "purpose",
        "max_per_number",
        "per",
        "suppression_uri",
        "suppression_conn_id",
        "suppression_sql",
        "max_recipients",
        "expected_recipients",
        "price_per_message",
        "dedupe_key",
        "report_uri",
        "concurrency",
        "quiet_hours",
    )
}
LEDGER = "sms_policy_ledger"  # each test points this connection at its own ledger database


def _dag(dag_id: str, *, native: bool = True, **default_args: Any) -> DAG:
    """A DAG the tests trigger by hand, no retries unless given; ``native``: templates render to Python
    objects."""
    return DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        render_template_as_native_obj=native,
        default_args={"retries": 0, **default_args},
    )


def _policy_dag(dag_id: str, **default_args: Any) -> DAG:
    """An SMS send whose policy settings come from the run's conf."""
    with _dag(dag_id, **default_args) as dag:
        SmsSendOperator(
            task_id="send",
            recipients="{{ dag_run.conf['recipients'] }}",
            template_code="TPL_CODE",
            template_params={"code": "1234"},
            dry_run="{{ dag_run.conf.get('dry_run', False) }}",
            ledger_conn_id=LEDGER,
            **POLICY,
        )
    return dag


policy_dag = _policy_dag("sms_test_policy")
# The same send with one retry at once: a failure that Airflow's retry may fix runs twice.
policy_retry_dag = _policy_dag("sms_test_policy_retry", retries=1, retry_delay=timedelta(0))

with _dag("sms_test_policy_mms") as policy_mms_dag:
    MmsSendOperator(
        task_id="send",
        recipients="{{ dag_run.conf['mobiles'] }}",
        mmsid="1001",
        send_time=_conf("send_time"),
        numbers_per_request=1,
        ledger_conn_id=LEDGER,
        **POLICY,
    )

# template_text is not a template field: one DAG per text.
TEXTS = {
    "sms_test_policy_no_opt_out": ("marketing", "验证码${code}，全场五折"),
    "sms_test_policy_opt_out": ("marketing", "验证码${code}，全场五折，拒收请回复R"),
    "sms_test_policy_verification": ("verification", "您的验证码${code}"),
}
for _dag_id, (_purpose, _text) in TEXTS.items():
    with _dag(_dag_id, native=False) as _text_dag:
        SmsSendOperator(
            task_id="send",
            recipients="{{ dag_run.conf['recipients'] | join(',') }}",
            template_code="TPL_CODE",
            template_params={"code": "1234"},
            template_text=_text,
            purpose=_purpose,
            ledger_conn_id=LEDGER,
        )
    globals()[_dag_id] = _text_dag  # a module-level name, as the DAG processor and the tests find DAGs


@task(task_id="window")
def quiet_window(**context: Any) -> str:
    """The window of the run, relative to now (Shanghai time, to the second): it is fixed here once,
    so that a send resumed after deferring sees the same window."""
    conf = context["dag_run"].conf
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    opens, closes = (now + timedelta(seconds=conf[key]) for key in ("opens_in", "closes_in"))
    return f"{opens:%H:%M:%S}-{closes:%H:%M:%S}"


with _dag("sms_test_quiet_hours") as quiet_hours_dag:
    quiet_window() >> MmsSendOperator(
        task_id="send",
        recipients="{{ dag_run.conf['mobiles'] }}",
        mmsid="1001",
        numbers_per_request=1,
        concurrency=2,
        quiet_hours="{{ ti.xcom_pull(task_ids='window') }}",
        ledger_conn_id=LEDGER,
    )

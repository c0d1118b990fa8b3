"""DAGs for the send settings tests: settings as a DAG author writes them, literal or templated."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_sms.operators.mms import MmsSendOperator


def _dag(dag_id: str, *, native: bool = False) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        render_template_as_native_obj=native,
        default_args={"retries": 0},
    )


with _dag("sms_test_settings_words", native=True) as words_dag:
    # Yes/no settings written as words, as a template or a config file would give them.
    MmsSendOperator(
        task_id="send",
        recipients="{{ dag_run.conf['mobiles'] }}",
        mmsid="1001",
        numbers_per_request=5,
        max_attempts=3,
        resend_ambiguous="false",
        report_unmasked="false",
        max_failed_ratio=1,
        dedupe_key="{{ dag_run.conf['dedupe_key'] }}",
        report_uri="{{ dag_run.conf['report_uri'] }}",
    )

with _dag("sms_test_settings_from_conf", native=True) as conf_dag:
    # Every setting from the run's conf; absent ones render to "" (not given).
    MmsSendOperator(
        task_id="send",
        recipients="{{ dag_run.conf['mobiles'] }}",
        mmsid="1001",
        pid="{{ dag_run.conf.get('pid', '') }}",
        check_balance="{{ dag_run.conf.get('check_balance', '') }}",
        concurrency="{{ dag_run.conf.get('concurrency', '') }}",
        max_failed_ratio="{{ dag_run.conf.get('max_failed_ratio', '') }}",
        max_rejected_ratio="{{ dag_run.conf.get('max_rejected_ratio', '') }}",
        progress_interval="{{ dag_run.conf.get('progress_interval', '') }}",
    )

with _dag("sms_test_settings_computed") as computed_dag:
    # Numeric settings computed by templates (rendered to text: no native rendering here).
    MmsSendOperator(
        task_id="send",
        recipients=[f"137{i:08d}" for i in range(30)],
        mmsid="1001",
        concurrency="{{ 1 + 1 }}",
        numbers_per_request="{{ 2 * 5 }}",
        max_attempts="{{ 1 + 2 }}",
        progress_interval="{{ 60 * 5 }}",
        max_failed_ratio="{{ 0.5 }}",
        lease_seconds="{{ 6 * 5 }}",
        heartbeat_seconds=5,
    )

"""DAGs for the operator tests; each task reads what it sends from the run's conf (native rendering)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_sms.operators.mms import MmsSendOperator
from airflow_provider_sms.operators.sms import SmsSendOperator
from airflow_provider_sms.operators.template import MmsTemplateUploadOperator

CONF = "{{ dag_run.conf }}"


def _dag(dag_id: str, *, native: bool = True) -> DAG:
    """A DAG the tests trigger by hand, no retries; ``native``: templates render to Python objects."""
    return DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        render_template_as_native_obj=native,
        default_args={"retries": 0},
    )


with _dag("sms_test_mms") as mms_dag:
    MmsSendOperator(
        task_id="send",
        recipients="{{ dag_run.conf['mobiles'] }}",
        mmsid="{{ dag_run.conf.get('mmsid', '1001') }}",
        send_time="{{ dag_run.conf.get('send_time', '') }}",
        dry_run="{{ dag_run.conf.get('dry_run', False) }}",
        report_uri="{{ dag_run.conf.get('report_uri', '') }}",
        dedupe_key="{{ dag_run.conf.get('dedupe_key', '') }}",
        max_failed_ratio=0.5,
    )

with _dag("sms_test_mms_guarded") as guarded_dag:
    MmsSendOperator(
        task_id="send",
        recipients="{{ dag_run.conf['mobiles'] }}",
        mmsid="1001",
        check_balance=True,
        retries=1,  # a failure that retrying cannot fix must not use it
        retry_delay=timedelta(seconds=0),
    )

with _dag("sms_test_sms") as sms_dag:
    SmsSendOperator(
        task_id="send",
        recipients="{{ dag_run.conf['recipients'] }}",
        template_code="{{ dag_run.conf.get('template_code', 'TPL_CODE') }}",
        template_params={"code": "{{ dag_run.conf.get('code', '1234') }}"},
        report_uri="{{ dag_run.conf.get('report_uri', '') }}",
    )

with _dag("sms_test_kill", native=False) as kill_dag:
    # 5,000 numbers in requests of 10, four at a time: slow enough on a slowed sandbox to be killed midway.
    MmsSendOperator(
        task_id="send",
        recipients=[f"135{i:08d}" for i in range(5000)],
        mmsid="1001",
        numbers_per_request=10,
        concurrency=4,
        progress_interval=1,
        lease_seconds=3,  # a run after a kill takes the dead try's claims over 3 s after its last heartbeat
        heartbeat_seconds=1,
    )

with _dag("sms_test_faults") as faults_dag:
    MmsSendOperator(
        task_id="send",
        recipients=[f"133{i:08d}" for i in range(10_000)],
        mmsid="1001",
        numbers_per_request=10,
        concurrency=32,
        max_attempts=6,
        max_failed_ratio=0.01,
        report_uri="{{ dag_run.conf['report_uri'] }}",
    )

with _dag("sms_test_mapped_mms", native=False) as mapped_mms_dag:
    # Dynamic task mapping: one template per title, then one send per uploaded template.
    FRAMES = Path(__file__).resolve().parents[2] / "example_dags" / "frames"  # resolve(): the link's target
    uploads = MmsTemplateUploadOperator.partial(
        task_id="upload", source=[(str(FRAMES / "1.gif"), "mapped", 3)]
    ).expand(title=["Spring", "Autumn"])
    MmsSendOperator.partial(
        task_id="send", recipients=[f"135{i:08d}" for i in range(150)], numbers_per_request=50
    ).expand(mmsid=uploads.output)

with _dag("sms_test_bad_audience_template", native=False) as bad_audience_dag:
    # An inline audience whose template does not render (no such filter): Airflow would log the
    # unrendered value, numbers and all.
    SmsSendOperator(
        task_id="send",
        recipients=["13800138000", "13900139000", "{{ dag_run.conf['extra'] | no_such_filter }}"],
        template_code="TPL_CODE",
    )

with _dag("sms_test_timeout", native=False) as timeout_dag:
    # 6,000 numbers in requests of 10, four at a time: on a slowed sandbox far longer than its timeout.
    MmsSendOperator(
        task_id="send",
        recipients=[f"136{i:08d}" for i in range(6000)],
        mmsid="1001",
        numbers_per_request=10,
        concurrency=4,
        execution_timeout=timedelta(seconds=3),
        report_uri="{{ var.value.get('sms_stop_report', '') }}",
    )

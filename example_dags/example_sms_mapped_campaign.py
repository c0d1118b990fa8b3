"""Scale-out: split one audience across mapped task instances so several workers share a campaign.

``split_audience`` cuts the audience file into chunk files (only their URIs go through XCom);
``SmsSendOperator.partial(...).expand(recipients=...)`` makes one task instance per chunk, which
Celery or Kubernetes workers run in parallel. One ``dedupe_key`` for all of them means a number
present in two chunks is still texted once; point ``ledger_conn_id`` at a shared database (e.g.
PostgreSQL) when the workers are on several machines (the default SQLite ledger is per machine).

The chunks are written and read through Airflow's ``ObjectStoragePath`` under the base URI in the
Airflow Variable ``sms_chunk_base``. Its default, a ``file://`` folder under ``AIRFLOW_HOME``, is
only readable on the machine that wrote it: with workers on several machines, set the Variable to
storage every worker reaches, e.g. ``s3://aws_default@my-bucket/sms-chunks`` (the connection id
before the ``@``) or a ``file://`` folder on a shared mount.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import ObjectStoragePath, Variable, dag, task

from airflow_provider_sms.operators.sms import SmsSendOperator

CHUNKS = int(os.environ.get("SMS_EXAMPLE_CHUNKS", "3"))
LEDGER_CONN_ID = os.environ.get("SMS_EXAMPLE_LEDGER_CONN_ID") or None


def chunk_base() -> ObjectStoragePath:
    """Where the chunks go: the ``sms_chunk_base`` Variable, read when the task runs (not at parse time)."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    default = "file://" + os.path.join(os.path.abspath(home), "sms-example", "chunks")
    return ObjectStoragePath(Variable.get("sms_chunk_base", default=default))


@dag(
    dag_id="example_sms_mapped_campaign",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["sms", "example"],
)
def example_sms_mapped_campaign() -> None:
    @task
    def split_audience(run_id: str | None = None) -> list[str]:
        """Stand-in for the ETL step: write ``CHUNKS`` chunk files of the audience, return their URIs."""
        folder = chunk_base() / f"chunks-{(run_id or 'manual').replace(':', '_')}"
        folder.mkdir(parents=True, exist_ok=True)
        uris = []
        for chunk in range(CHUNKS):
            path = folder / f"part-{chunk}.csv"
            rows = range(chunk * 100, chunk * 100 + 120)  # 20 numbers overlap the next chunk
            path.write_text("phone,code\n" + "".join(f"139{i:08d},{i % 10000:04d}\n" for i in rows), "utf-8")
            uris.append(str(path))  # a URI: the send reads it through the same storage, on any worker
        return uris

    SmsSendOperator.partial(
        task_id="send_chunk",
        template_code="TPL_CODE",
        dedupe_key="mapped-{{ run_id }}",  # one key per run, kept when the run is cleared and rerun
        ledger_conn_id=LEDGER_CONN_ID,
        concurrency=8,
    ).expand(recipients=split_audience())


example_sms_mapped_campaign_dag = example_sms_mapped_campaign()

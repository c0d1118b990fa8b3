"""Scale-out: split one audience across mapped task instances so several workers share a campaign.

``split_audience`` cuts the audience file into chunk files (only their paths go through XCom);
``SmsSendOperator.partial(...).expand(recipients=...)`` makes one task instance per chunk, which
Celery or Kubernetes workers run in parallel. One ``dedupe_key`` for all of them means a number
present in two chunks is still texted once; point ``ledger_conn_id`` at a shared database (e.g.
PostgreSQL) when the workers are on several machines (the default SQLite ledger is per machine).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, task

from airflow_provider_sms.operators.sms import SmsSendOperator

DATA_DIR = Path(os.environ.get("SMS_EXAMPLE_DATA_DIR") or os.path.join(tempfile.gettempdir(), "sms-example"))
CHUNKS = int(os.environ.get("SMS_EXAMPLE_CHUNKS", "3"))
LEDGER_CONN_ID = os.environ.get("SMS_EXAMPLE_LEDGER_CONN_ID") or None


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
        """Stand-in for the ETL step: write ``CHUNKS`` chunk files of the audience, return their paths."""
        folder = DATA_DIR / f"chunks-{(run_id or 'manual').replace(':', '_')}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for chunk in range(CHUNKS):
            path = folder / f"part-{chunk}.csv"
            with path.open("w", encoding="utf-8") as out:
                out.write("phone,code\n")
                for i in range(chunk * 100, chunk * 100 + 120):  # 20 numbers overlap the next chunk
                    out.write(f"139{i:08d},{i % 10000:04d}\n")
            paths.append(str(path))
        return paths

    SmsSendOperator.partial(
        task_id="send_chunk",
        template_code="TPL_CODE",
        dedupe_key="mapped-{{ run_id }}",  # one key per run, kept when the run is cleared and rerun
        ledger_conn_id=LEDGER_CONN_ID,
        concurrency=8,
    ).expand(recipients=split_audience())


example_sms_mapped_campaign_dag = example_sms_mapped_campaign()

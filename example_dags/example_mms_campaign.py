"""Balance-gated MMS campaign: build the audience, upload the template, wait for balance, send.

1. ``build_audience`` stands in for the ETL step: it writes the audience to a CSV file and returns its
   path and size (only that small dict goes through XCom).
2. ``MmsTemplateUploadOperator`` builds the MMS zip (with its SMIL layout) from frames and uploads it.
3. ``BalanceSensor`` (deferrable: no worker slot held while waiting) waits until the ihuyi balance
   covers the audience; its threshold is templated from the audience size.
4. ``MmsSendOperator`` streams the file, sends in batches with bounded concurrency and a rate limit,
   records each outcome in the ledger (a retry never texts anyone twice), and writes a report.

It texts people, so it has no schedule: unpausing it sends nothing, a run starts only when triggered
(``airflow dags trigger example_mms_campaign``). For a weekly campaign, set the schedule shown in the
``@dag`` call once the audience and the template are real ones. The audience and the report are
written to a local folder (``SMS_EXAMPLE_DATA_DIR``, else the temp folder): with workers on several
machines, write them to storage every worker reaches (see ``example_sms_mapped_campaign``).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task

from airflow_provider_sms.operators.mms import MmsSendOperator
from airflow_provider_sms.operators.template import MmsTemplateUploadOperator
from airflow_provider_sms.sensors.balance import BalanceSensor

FRAMES = Path(__file__).resolve().parent / "frames"
DATA_DIR = os.environ.get("SMS_EXAMPLE_DATA_DIR") or os.path.join(tempfile.gettempdir(), "sms-example")
AUDIENCE_SIZE = int(os.environ.get("SMS_EXAMPLE_AUDIENCE", "2000"))


@dag(
    dag_id="example_mms_campaign",
    # Triggered by hand only: with a schedule, unpausing the DAG would send a campaign at once (Airflow
    # runs the latest interval). A weekly campaign, Mondays at 10:00: schedule="0 10 * * 1".
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["mms", "example"],
)
def example_mms_campaign() -> None:
    @task
    def build_audience() -> dict[str, object]:
        """Stand-in for the ETL step: write the audience (a ``phone`` column) to CSV."""
        # Every run has ``run_after``; ``ds_nodash`` is undefined in a run without a logical date.
        day = get_current_context()["dag_run"].run_after
        path = Path(DATA_DIR) / f"audience-{day:%Y%m%d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            out.write("phone,segment\n")
            for i in range(AUDIENCE_SIZE):
                out.write(f"138{i:08d},vip\n")
            out.write("not-a-number,vip\n13800000001,vip\n")  # one bad row, one duplicate
        return {"path": str(path), "count": AUDIENCE_SIZE}

    audience = build_audience()

    upload = MmsTemplateUploadOperator(
        task_id="upload_template",
        title="Double 11 sale",
        source=[(str(FRAMES / "1.gif"), (FRAMES / "1.txt").read_text(encoding="utf-8"), 5)],
    )

    enough_balance = BalanceSensor(
        task_id="wait_for_balance",
        min_balance="{{ ti.xcom_pull(task_ids='build_audience')['count'] }}",
        deferrable=True,
        poll_interval=5,
        timeout=3600,
    )

    send = MmsSendOperator(
        task_id="send_campaign",
        recipients="{{ ti.xcom_pull(task_ids='build_audience')['path'] }}",
        mmsid=upload.output,
        check_balance=True,
        concurrency=16,
        requests_per_second=50,
        report_uri=DATA_DIR + "/report-{{ dag_run.run_after | ds_nodash }}.csv",
    )

    audience >> enough_balance
    [upload, enough_balance] >> send


example_mms_campaign_dag = example_mms_campaign()

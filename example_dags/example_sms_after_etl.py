"""ETL, then a personalised SMS to every customer whose order shipped.

The extract task returns rows ``{"phone": ..., "params": {...}}`` (a small XCom here; for large
audiences write a CSV and pass its path or URI instead). ``SmsSendOperator`` normalises and dedupes
the numbers, checks every row's params before the first request, sends through juncdt, and returns
a compact summary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from airflow_provider_sms.operators.sms import SmsSendOperator


@dag(
    dag_id="example_sms_after_etl",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["sms", "example"],
)
def example_sms_after_etl() -> None:
    # Phone numbers are personal data: keep Airflow from printing the returned rows in the task log.
    @task(show_return_value_in_logs=False)
    def shipped_orders() -> list[dict[str, Any]]:
        """Stand-in for a warehouse query: who shipped today, with their message params."""
        rows = [
            ("138 0013 8001", "王芳", "A1001"),
            ("+86 139-0013-8002", "李雷", "A1002"),
            ("13800138001", "王芳", "A1001"),
            ("13700138003", "赵敏", "A1003"),
        ]
        return [{"phone": phone, "params": {"name": name, "order": order}} for phone, name, order in rows]

    SmsSendOperator(
        task_id="notify_shipped",
        recipients=shipped_orders(),
        template_code="TPL_NOTICE",
        param_names=["name", "order"],
        purpose="notification",  # a shipping notice: no quiet hours, cap or opt-out text (marketing's)
        # Every run has ``dag_run.run_after``; ``ds`` is undefined in a run without a logical date.
        report_uri="{{ var.value.get('sms_report_dir', '/tmp') }}"
        "/shipped-{{ dag_run.run_after | ds_nodash }}.csv",
    )


example_sms_after_etl_dag = example_sms_after_etl()

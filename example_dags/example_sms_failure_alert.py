"""Text the on-call engineer when an ETL task fails.

``SmsNotifier`` as the task's ``on_failure_callback`` sends the juncdt alert template ``TPL_ALERT`` with
the DAG, task, try number and log URL rendered from the failed task's context. A notification that
cannot be sent is logged and never hides the task's own error.

Only the task-level callback is set: a DAG-level ``on_failure_callback`` would text the same person a
second time for the same failure, without the try number and log URL of the task that failed.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from airflow_provider_sms.notifications.sms import SmsNotifier

ON_CALL = "13800138000"


@dag(
    dag_id="example_sms_failure_alert",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 0},
    tags=["sms", "example"],
)
def example_sms_failure_alert() -> None:
    @task(on_failure_callback=SmsNotifier(phones=ON_CALL, template_code="TPL_ALERT"))
    def load_orders() -> None:
        """Stand-in for an ETL step that breaks."""
        raise ValueError("ETL step failed: orders table is empty")

    load_orders()


failure_alert_dag = example_sms_failure_alert()

if __name__ == "__main__":
    failure_alert_dag.test()

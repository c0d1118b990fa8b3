"""A marketing SMS that a person approves first: a dry run, its summary put before them, then the send.

The dry run applies the whole contact policy without sending (suppression list, frequency cap,
quiet hours) and estimates the cost; ``ApprovalOperator`` (Airflow's human-in-the-loop, standard
provider) shows its summary in the Required Actions view; the send runs only once approved (a
rejection skips it). The send repeats the dry run's settings, so what was approved is what runs:
numbers that became suppressed or capped meanwhile are still left out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task

from airflow_provider_sms.operators.sms import SmsSendOperator

AUDIENCE = "{{ var.value.get('sms_spring_audience', '') or '13800138001,13900139002,13700137003' }}"
CAMPAIGN: dict[str, Any] = {
    "recipients": AUDIENCE,  # a list, an XCom, or a CSV / JSON Lines file URI for a large audience
    "template_code": "TPL_CODE",
    "template_params": {"code": "SPRING"},
    "template_text": "春季特惠，优惠码${code}，拒收请回复R",  # checked for the opt-out instruction
    "max_per_number": 1,  # at most one marketing message per number a day, across campaigns
    "per": "24h",
    "max_recipients": 100_000,  # a join gone wrong fails here, not on people's phones
    "price_per_message": 0.05,
    "dedupe_key": "spring-{{ dag_run.run_id }}",
}


@dag(
    dag_id="example_sms_approved_campaign",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["sms", "example"],
)
def example_sms_approved_campaign() -> None:
    preview = SmsSendOperator(task_id="preview", dry_run=True, **CAMPAIGN)

    @task
    def describe(summary: Any) -> str:  # the dry run's summary dict (an XCom when the DAG is built)
        """The approver's view of the dry run: counts, policy effect, cost, three masked numbers."""
        from airflow_provider_sms.dispatch.policy import approval_text

        return approval_text(summary)

    body = describe(preview.output)  # the dry run's summary (small, numbers masked)
    approve = ApprovalOperator(
        task_id="approve",
        subject="Send the spring campaign?",
        body="{{ ti.xcom_pull(task_ids='describe') }}",
        response_timeout=timedelta(hours=12),  # no answer: the default (Reject) skips the send
        defaults="Reject",
    )
    send = SmsSendOperator(task_id="send", **CAMPAIGN)
    preview >> body >> approve >> send


example_sms_approved_campaign_dag = example_sms_approved_campaign()

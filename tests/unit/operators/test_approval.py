"""The approval example: a dry run's summary before a person (human-in-the-loop ``ApprovalOperator``),
the send only once approved. Run through real Airflow task execution (``dag.test()``); the person
answers through Airflow's public REST API (the HITL endpoints the Required Actions view uses),
served in-process by the api-server's own app on the same metadata database.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from airflow_provider_sms.sandbox.server import SandboxServer
from tests.airflow32 import airflow_33
from tests.helpers import deliveries, run_dag

pytest.importorskip("airflow.providers.standard.operators.hitl", reason="no human-in-the-loop operators")
pytestmark = [
    pytest.mark.usefixtures("airflow_db"),
    # dag.test() runs the approval's trigger in process; on Airflow 3.2 that runner answers the
    # trigger's request for the person's response with nothing (AttributeError in the standard
    # provider's HITLTrigger), approved or not. 3.3 answers it.
    pytest.mark.skipif(not airflow_33(), reason="Airflow 3.2's dag.test() cannot run the HITL trigger"),
]

DAG_ID = "example_sms_approved_campaign"


class Approver(threading.Thread):
    """A person answering the first approval request of ``DAG_ID`` with ``choice``; ``body`` is
    what they were shown."""

    def __init__(self, choice: str) -> None:
        super().__init__(daemon=True)
        self.choice = choice
        self.body: str | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()
        # Imported and built here, in the test's thread: importing Airflow's models from two
        # threads at once (dag.test() in the other) deadlocks on the import lock.
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        self.client = TestClient(create_app("core"))

    def run(self) -> None:
        try:
            self._answer()
        except BaseException as exc:  # shown by the test
            self.error = exc

    def _answer(self) -> None:
        client = self.client
        while not self.stop.is_set():
            found = client.get(f"/api/v2/dags/{DAG_ID}/dagRuns/~/hitlDetails")
            found.raise_for_status()
            for detail in found.json()["hitl_details"]:
                if detail["response_received"]:
                    continue
                ti = detail["task_instance"]
                self.body = detail["body"]
                path = (
                    f"/api/v2/dags/{DAG_ID}/dagRuns/{ti['dag_run_id']}/taskInstances/"
                    f"{ti['task_id']}/{ti['map_index']}/hitlDetails"
                )
                client.patch(path, json={"chosen_options": [self.choice]}).raise_for_status()
                return
            time.sleep(0.5)


@pytest.fixture
def campaign(connections: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    # Every request to the in-process API is an admin's (the test plays the approver).
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    # Numbers no other test texts: the example caps each number at one marketing SMS a day.
    monkeypatch.setenv(
        "AIRFLOW_VAR_SMS_SPRING_AUDIENCE", "13512340001,13512340002,13512340003,13512340004,13512340001"
    )
    return connections


def run_with(choice: str) -> tuple[Any, Approver]:
    approver = Approver(choice)
    approver.start()
    try:
        result = run_dag(DAG_ID)
    finally:
        approver.stop.set()
        approver.join(10)
    assert approver.error is None, approver.error
    return result, approver


def test_the_send_runs_once_approved(campaign: SandboxServer) -> None:
    result, approver = run_with("Approve")
    assert approver.body is not None
    assert "**4 recipient(s) to send** of 5 input rows" in approver.body
    assert "Estimated cost: 0.2" in approver.body and "135****0001" in approver.body
    assert "13512340001" not in approver.body  # numbers are masked before a person sees them
    assert result.task("approve") == "success" and result.task("send") == "success"
    assert result.xcom("send", "summary")["accepted"] == 4
    assert len(deliveries(campaign)) == 4


def test_a_rejected_send_texts_nobody(campaign: SandboxServer) -> None:
    result, approver = run_with("Reject")
    assert approver.body is not None
    assert result.task("preview") == "success" and result.task("send") == "skipped"
    assert deliveries(campaign) == []

"""The example DAGs under real Airflow components: scheduler, dag-processor, triggerer and api-server
as separate processes, LocalExecutor workers, a SQLite metadata database in a fresh ``AIRFLOW_HOME``,
and the sandbox gateway in a process of its own, all over loopback.

One stack serves the module (starting it takes about a minute). Every process's log and the task logs
stay in the stack's folder under pytest's kept temporary directory, and their tails are in any
failure message.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import pytest

from tests.integration.components import ROOT, Stack
from tests.integration.helpers import (
    Stopwatch,
    deliveries,
    requests_of,
    run_path,
    task_states,
    trigger,
    wait_for_run,
    wait_for_task,
    xcom,
)

AUDIENCE = 300  # the MMS campaign's audience (the example's SMS_EXAMPLE_AUDIENCE)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("localexec")
    stack = Stack(folder, extra_env={"SMS_EXAMPLE_AUDIENCE": str(AUDIENCE)})
    clock = Stopwatch()
    try:
        stack.start(sorted((ROOT / "example_dags").glob("*.py")))
        stack.wait(
            lambda: stack.api("GET", "/api/v2/dags?limit=100")["total_entries"] >= 4,
            120,
            "the dag-processor to parse the four example DAGs",
        )
        print(f"stack up in {clock.elapsed:.1f}s ({stack.timings}); files in {folder}")
        yield stack
    finally:
        stopping = Stopwatch()
        stack.stop()
        print(f"stack stopped in {stopping.elapsed:.1f}s")


@pytest.fixture
def sandbox(stack: Stack) -> Stack:
    stack.sandbox("POST", "/_sandbox/reset")
    return stack


def failure(stack: Stack, what: str, dag_id: str, run_id: str) -> str:
    return f"{what}: {task_states(stack, dag_id, run_id)}{stack.logs()}"


def test_etl_then_sms_runs_on_a_local_worker(sandbox: Stack) -> None:
    run = trigger(sandbox, "example_sms_after_etl")
    state = wait_for_run(sandbox, "example_sms_after_etl", run)
    assert state == "success", failure(sandbox, state, "example_sms_after_etl", run)
    summary = xcom(sandbox, "example_sms_after_etl", run, "notify_shipped")
    assert (summary["accepted"], summary["duplicate"], summary["total"]) == (3, 1, 4)
    got = {d["number"]: d["params"] for d in deliveries(sandbox, "juncdt")}
    assert got == {
        "13800138001": {"name": "王芳", "order": "A1001"},
        "13900138002": {"name": "李雷", "order": "A1002"},
        "13700138003": {"name": "赵敏", "order": "A1003"},
    }
    assert len(list((sandbox.folder / "data").glob("shipped-*.csv"))) == 1


def test_failure_callback_texts_the_on_call_engineer(sandbox: Stack) -> None:
    run = trigger(sandbox, "example_sms_failure_alert")
    state = wait_for_run(sandbox, "example_sms_failure_alert", run)
    assert state == "failed", failure(sandbox, state, "example_sms_failure_alert", run)
    assert task_states(sandbox, "example_sms_failure_alert", run) == {("load_orders", -1): "failed"}
    # The callback runs after the task's failure is recorded: wait (bounded) for its message.
    sent = sandbox.wait(lambda: deliveries(sandbox, "juncdt"), 60, "the failure alert to reach the sandbox")
    assert [(d["number"], d["template_code"]) for d in sent] == [("13800138000", "TPL_ALERT")]
    params = sent[0]["params"]
    assert "example_sms_failure_alert" in str(params) and "load_orders" in str(params)


def test_balance_sensor_defers_in_the_triggerer_until_a_recharge(sandbox: Stack) -> None:
    dag_id = "example_mms_campaign"
    sandbox.sandbox("POST", "/_sandbox/accounts", {"ihuyi": {"balance": 100}})
    run = trigger(sandbox, dag_id)
    wait_for_task(sandbox, dag_id, run, "wait_for_balance", {"deferred"})
    # Deferred: the triggerer polls the balance (every 5 s) while no worker slot is held.
    polls = len(requests_of(sandbox, "GetNum"))
    sandbox.wait(
        lambda: len(requests_of(sandbox, "GetNum")) >= polls + 1, 30, "the triggerer to poll the balance"
    )
    states = task_states(sandbox, dag_id, run)
    assert states[("wait_for_balance", -1)] == "deferred", failure(sandbox, "not deferred", dag_id, run)
    assert states[("send_campaign", -1)] in {"none", "None", "scheduled"}, states
    assert deliveries(sandbox, "ihuyi") == []

    recharged = time.time()
    sandbox.sandbox("POST", "/_sandbox/accounts", {"ihuyi": {"balance": 5000}})
    clock = Stopwatch()
    wait_for_task(sandbox, dag_id, run, "wait_for_balance", {"success"}, timeout=60)
    sensed = clock.elapsed
    state = wait_for_run(sandbox, dag_id, run)
    assert state == "success", failure(sandbox, state, dag_id, run)
    sent = deliveries(sandbox, "ihuyi")
    assert len(sent) == AUDIENCE == len({d["number"] for d in sent})
    assert {d["mmsid"] for d in sent} == {str(xcom(sandbox, dag_id, run, "upload_template"))}
    summary = xcom(sandbox, dag_id, run, "send_campaign")
    assert (summary["accepted"], summary["rejected"], summary["duplicate"]) == (AUDIENCE, 1, 1)
    assert sandbox.sandbox("GET", "/_sandbox/state")["ihuyi"]["balance"] == 5000 - AUDIENCE
    first_sent = min(d["at"] for d in sent) - recharged
    print(f"after the recharge: sensor success seen in {sensed:.1f}s, first message sent {first_sent:.1f}s")
    assert first_sent < 45  # poll interval 5 s, then the scheduler and a worker start the send


def test_a_cleared_send_reruns_and_texts_nobody_twice(sandbox: Stack) -> None:
    dag_id = "example_sms_mapped_campaign"
    run = trigger(sandbox, dag_id)
    state = wait_for_run(sandbox, dag_id, run)
    assert state == "success", failure(sandbox, state, dag_id, run)
    first = [d["number"] for d in deliveries(sandbox, "juncdt")]
    assert len(first) == len(set(first)) == 320

    clock = Stopwatch()
    # The module's only run of this DAG. (Airflow 3.3 on SQLite: `--start-date`/`--end-date` select no
    # run, and an anchored regex such as "^send_chunk$" no task.)
    sandbox.cli("tasks", "clear", dag_id, "--task-regex", "send_chunk", "--yes")
    # The scheduler reruns the three mapped sends: try 2 of each, same run id, same dedupe key.
    sandbox.wait(
        lambda: run_tries(sandbox, dag_id, run) == {0: 2, 1: 2, 2: 2},
        60,
        "the three cleared send_chunk instances to be rerun (try 2)",
    )
    state = wait_for_run(sandbox, dag_id, run)
    assert state == "success", failure(sandbox, state, dag_id, run)
    print(f"cleared and rerun in {clock.elapsed:.1f}s")
    summaries = [xcom(sandbox, dag_id, run, "send_chunk", map_index=i) for i in range(3)]
    assert [s["accepted"] for s in summaries] == [0, 0, 0]
    # Each chunk finds what its own first try sent (accepted_earlier) and what another chunk sent
    # (skipped): together, every row of the three chunks.
    assert sum(s["accepted_earlier"] for s in summaries) == 320
    assert sum(s["skipped"] for s in summaries) == 40
    sent = collections.Counter(d["number"] for d in deliveries(sandbox, "juncdt"))
    assert len(sent) == 320 and set(sent.values()) == {1}, "a number was texted twice"


def run_tries(stack: Stack, dag_id: str, run_id: str) -> dict[int, int]:
    """The try number of each send_chunk instance that ended (success or failed)."""
    found = stack.api("GET", run_path(dag_id, run_id) + "/taskInstances?task_id=send_chunk&limit=100")
    return {
        ti["map_index"]: ti["try_number"]
        for ti in found["task_instances"]
        if ti["task_id"] == "send_chunk" and ti["state"] in {"success", "failed"}
    }

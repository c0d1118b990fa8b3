"""What the integration tests do with a running stack: trigger DAGs, wait for states, read results."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from tests.integration.components import Stack

FINISHED = {"success", "failed"}


def run_path(dag_id: str, run_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"


def trigger(
    stack: Stack, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None
) -> str:
    """Unpause ``dag_id`` and trigger a run through the REST API; returns the run id."""
    stack.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    body = {"logical_date": logical_date, "conf": conf or {}}
    return str(stack.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"])


def run_state(stack: Stack, dag_id: str, run_id: str) -> str:
    return str(stack.api("GET", run_path(dag_id, run_id))["state"])


def task_states(stack: Stack, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    """Each task instance's state, by (task id, map index); mapped instances one by one."""
    found = stack.api("GET", run_path(dag_id, run_id) + "/taskInstances?limit=100")
    return {(ti["task_id"], ti["map_index"]): str(ti["state"]) for ti in found["task_instances"]}


def wait_for_run(stack: Stack, dag_id: str, run_id: str, timeout: float = 120) -> str:
    """Wait (bounded) for the run to end; returns its state."""

    def ended() -> str | None:
        state = run_state(stack, dag_id, run_id)
        return state if state in FINISHED else None

    return stack.wait(ended, timeout, f"run {run_id} of {dag_id} to end")


def wait_for_task(
    stack: Stack, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 120
) -> str:
    """Wait (bounded) until the task instance reaches one of ``states``; returns the state reached."""

    def reached() -> str | None:
        state = task_states(stack, dag_id, run_id).get((task_id, -1))
        return state if state in states else None

    return stack.wait(reached, timeout, f"{dag_id}.{task_id} of {run_id} to reach {sorted(states)}")


def xcom(
    stack: Stack, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
) -> Any:
    path = f"{run_path(dag_id, run_id)}/taskInstances/{task_id}/xcomEntries/{key}?map_index={map_index}"
    return stack.api("GET", path + "&deserialize=true")["value"]


def deliveries(stack: Stack, gateway: str) -> list[dict[str, Any]]:
    return list(stack.sandbox("GET", f"/_sandbox/deliveries?gateway={gateway}")["deliveries"])


def requests_of(stack: Stack, method: str) -> list[dict[str, Any]]:
    """The sandbox's request log, calls of one gateway method (e.g. ``GetNum``)."""
    return [r for r in stack.sandbox("GET", "/_sandbox/requests")["requests"] if r["method"] == method]


class Stopwatch:
    """Seconds since creation (``elapsed``), for the timings the tests report."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

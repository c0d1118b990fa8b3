"""BalanceSensor and BalanceTrigger against the sandbox: poke, reschedule and deferrable modes for real."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from airflow_provider_sms.sandbox.server import SandboxServer
from airflow_provider_sms.sandbox.state import IHUYI_PASSWORD
from airflow_provider_sms.sensors.balance import BalanceSensor, parse_min_balance
from airflow_provider_sms.triggers.balance import BalanceTrigger
from tests.helpers import control, force, raises, run_dag

# dag.test() in Airflow 3.3 only runs DAGs it can serialise from the DAGs folder, so the DAGs of these
# tests are written there (the test AIRFLOW_HOME, not the repository).
DAGS_SOURCE = """
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_sms.sensors.balance import BalanceSensor

MIN = "{{ dag_run.conf['min_balance'] }}"
VARIANTS = {
    "sms_test_balance_poke": {"mode": "poke", "timeout": 60},
    "sms_test_balance_reschedule": {"mode": "reschedule", "timeout": 60},
    "sms_test_balance_deferrable": {"deferrable": True, "timeout": 60},
    "sms_test_balance_deferrable_timeout": {"deferrable": True, "timeout": 2},
}
for dag_id, options in VARIANTS.items():
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), default_args={"retries": 0}) as dag:
        BalanceSensor(task_id="wait", min_balance=MIN, poll_interval=1, **options)
    globals()[dag_id] = dag
"""
Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], "sms_test_balance_dags.py").write_text(DAGS_SOURCE)


def set_balance(server: SandboxServer, balance: int, **extra: Any) -> None:
    control(server, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": balance, **extra}})


def get_num_calls(server: SandboxServer) -> list[dict[str, Any]]:
    data = control(server, "GET", "/_sandbox/requests")
    entries = data["requests"] if isinstance(data, dict) else data
    return [e for e in entries if e["method"] == "GetNum"]


@pytest.fixture
def after_polls(connections: SandboxServer) -> Iterator[Callable[[int, Callable[[], None]], None]]:
    """Change the sandbox once the sensor has queried it ``polls`` times (a recharge in the console).

    Keyed on the sandbox's request log, not on time: the first dag.test() of a process takes seconds
    to start the in-process API server. Stopped at teardown, so it never touches a later test.
    """
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def schedule(polls: int, action: Callable[[], None]) -> None:
        def run() -> None:
            while len(get_num_calls(connections)) < polls:
                if stop.wait(0.1):
                    return
            action()

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()

    yield schedule
    stop.set()
    for thread in threads:
        thread.join(5)


def sensor(**kwargs: Any) -> BalanceSensor:
    return BalanceSensor(task_id="wait", **{"min_balance": 100, "poll_interval": 1, **kwargs})


# -- poke() ------------------------------------------------------------------------------------------


def test_poke_true_and_false(connections: SandboxServer) -> None:
    set_balance(connections, 500)
    done = sensor(min_balance=500).poke({})  # type: ignore[arg-type]
    assert isinstance(done, PokeReturnValue) and done.is_done
    assert done.xcom_value == {"balance": 500, "min_balance": 500}
    assert not sensor(min_balance=501).poke({}).is_done  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "expected"), [("1500", 1500), (" 42 ", 42), (7, 7), (3.0, 3), ("0", 0)])
def test_min_balance_parsing(value: object, expected: int) -> None:
    assert parse_min_balance(value) == expected


@pytest.mark.parametrize("bad", [-1, "-5", "12.5", 2.5, "many", "", None, True, [3]])
def test_bad_min_balance_fails_before_any_request(connections: SandboxServer, bad: object) -> None:
    with raises(AirflowFailException, match="min_balance"):
        sensor(min_balance=bad).poke({})  # type: ignore[arg-type]
    assert get_num_calls(connections) == []


@pytest.mark.parametrize("fatal", ["wrong password", "frozen"])
def test_fatal_answer_fails_at_once(connections: SandboxServer, fatal: str) -> None:
    if fatal == "frozen":
        set_balance(connections, 10_000, frozen=True)
    else:
        force(connections, "ihuyi", "GetNum", "405", times=5)
    with raises(AirflowFailException, match="405" if fatal != "frozen" else "4050") as err:
        sensor().poke({})  # type: ignore[arg-type]
    assert IHUYI_PASSWORD not in str(err.value)
    assert len(get_num_calls(connections)) == 1


def test_transient_fault_is_a_false_poke(connections: SandboxServer) -> None:
    control(connections, "POST", "/_sandbox/faults", {"http_5xx_rate": 1.0})
    assert not sensor(min_balance=0).poke({}).is_done  # type: ignore[arg-type]


# -- real task execution through dag.test() ------------------------------------------------------------

needs_db = pytest.mark.usefixtures("airflow_db")


@needs_db
def test_poke_mode_templated_threshold(connections: SandboxServer) -> None:
    set_balance(connections, 1000)
    result = run_dag("sms_test_balance_poke", run_conf={"min_balance": "1000"})
    assert result.task("wait") == "success"
    assert result.xcom("wait") == {"balance": 1000, "min_balance": 1000}


@needs_db
def test_poke_mode_fails_at_once_on_fatal_answer(connections: SandboxServer) -> None:
    set_balance(connections, 10, frozen=True)
    started = time.monotonic()
    result = run_dag("sms_test_balance_poke", run_conf={"min_balance": 5})
    assert result.task("wait") == "failed"
    assert time.monotonic() - started < 30  # not the sensor's 60 s timeout
    assert len(get_num_calls(connections)) == 1


@needs_db
def test_negative_threshold_fails_the_task_before_any_request(connections: SandboxServer) -> None:
    result = run_dag("sms_test_balance_poke", run_conf={"min_balance": -3})
    assert result.task("wait") == "failed"
    assert get_num_calls(connections) == []


@needs_db
def test_reschedule_mode_waits_for_recharge(connections: SandboxServer, after_polls: Any) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    set_balance(connections, 100)
    after_polls(2, lambda: set_balance(connections, 2000))
    result = run_dag("sms_test_balance_reschedule", run_conf={"min_balance": 1500})
    assert result.task("wait") == "success", result.tasks
    assert result.xcom("wait") == {"balance": 2000, "min_balance": 1500}
    with create_session() as session:
        latest = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == "sms_test_balance_reschedule")
            .order_by(TaskInstance.start_date.desc())
            .first()
        )
        assert latest is not None
        reschedules = session.query(TaskReschedule).filter(TaskReschedule.ti_id == latest.id).count()
    assert reschedules >= 1  # the slot was given back between pokes
    assert len(get_num_calls(connections)) >= 3


@needs_db
def test_deferrable_mode_waits_in_the_trigger(connections: SandboxServer, after_polls: Any) -> None:
    set_balance(connections, 100)
    after_polls(3, lambda: set_balance(connections, 2000))
    result = run_dag("sms_test_balance_deferrable", run_conf={"min_balance": 1500})
    assert result.task("wait") == "success", result.tasks
    assert result.xcom("wait") == {"balance": 2000, "min_balance": 1500}
    assert len(get_num_calls(connections)) >= 4  # execute's first check, then the trigger's polls


@needs_db
def test_deferrable_enough_balance_does_not_defer(connections: SandboxServer) -> None:
    set_balance(connections, 2000)
    result = run_dag("sms_test_balance_deferrable", run_conf={"min_balance": 10})
    assert result.task("wait") == "success"
    assert len(get_num_calls(connections)) == 1


@needs_db
def test_deferrable_mode_fails_on_fatal_answer_while_deferred(
    connections: SandboxServer, after_polls: Any
) -> None:
    set_balance(connections, 100)
    after_polls(2, lambda: set_balance(connections, 100, frozen=True))
    started = time.monotonic()
    result = run_dag("sms_test_balance_deferrable", run_conf={"min_balance": 1500})
    assert result.task("wait") == "failed"
    assert time.monotonic() - started < 30
    calls = get_num_calls(connections)
    assert len(calls) >= 3 and calls[-1]["code"] == "4050"  # the trigger stopped at the frozen answer


@needs_db
def test_deferrable_mode_times_out(connections: SandboxServer) -> None:
    set_balance(connections, 100)
    started = time.monotonic()
    result = run_dag("sms_test_balance_deferrable_timeout", run_conf={"min_balance": 1500})
    assert result.task("wait") == "failed"
    assert time.monotonic() - started < 30


# -- execute_complete ----------------------------------------------------------------------------------


def test_execute_complete_maps_events() -> None:
    s = sensor(min_balance="1500")
    ctx: Any = {}
    assert s.execute_complete(ctx, {"status": "success", "balance": 1600}) == {
        "balance": 1600,
        "min_balance": 1500,
    }
    with raises(AirflowSensorTimeout):
        s.execute_complete(ctx, {"status": "timeout", "message": "late", "balance": 3})
    with raises(AirflowFailException, match="4050"):
        s.execute_complete(ctx, {"status": "error", "message": "ihuyi GetNum answered code 4050"})
    with raises(AirflowFailException):
        s.execute_complete(ctx, None)


# -- the trigger, run directly -------------------------------------------------------------------------


async def first_event(trigger: BalanceTrigger, limit: float = 20) -> dict[str, Any]:
    event = await asyncio.wait_for(anext(trigger.run()), limit)
    return dict(event.payload)


def test_trigger_serialize_round_trip() -> None:
    trigger = BalanceTrigger(min_balance=5, ihuyi_conn_id="ihuyi_x", poll_interval=2.5, timeout=123.0)
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_sms.triggers.balance.BalanceTrigger"
    assert BalanceTrigger(**kwargs).serialize() == (path, kwargs)


async def test_trigger_success(connections: SandboxServer) -> None:
    set_balance(connections, 800)
    event = await first_event(BalanceTrigger(min_balance=800, poll_interval=0.2))
    assert event == {"status": "success", "balance": 800}


async def test_trigger_polls_through_transient_faults(connections: SandboxServer) -> None:
    control(connections, "POST", "/_sandbox/faults", {"http_5xx_rate": 1.0})
    loop = asyncio.get_running_loop()
    clear = loop.run_in_executor(
        None,
        lambda: (time.sleep(1.0), control(connections, "POST", "/_sandbox/faults", {"http_5xx_rate": 0.0})),
    )
    event = await first_event(BalanceTrigger(min_balance=1, poll_interval=0.2))
    await clear
    assert event["status"] == "success"
    calls = get_num_calls(connections)
    assert len(calls) >= 3 and calls[0]["fault"] and calls[-1]["code"] == "2"


async def test_trigger_waits_then_succeeds(connections: SandboxServer, after_polls: Any) -> None:
    set_balance(connections, 10)
    after_polls(2, lambda: set_balance(connections, 5000))
    event = await first_event(BalanceTrigger(min_balance=1000, poll_interval=0.3))
    assert event == {"status": "success", "balance": 5000}


@pytest.mark.parametrize("code", ["405", "4050"])
async def test_trigger_fatal_answer_is_an_error_event(connections: SandboxServer, code: str) -> None:
    force(connections, "ihuyi", "GetNum", code, times=5)
    event = await first_event(BalanceTrigger(min_balance=1, poll_interval=0.2))
    assert event["status"] == "error" and code in event["message"]
    assert IHUYI_PASSWORD not in event["message"]
    assert len(get_num_calls(connections)) == 1


async def test_trigger_timeout(connections: SandboxServer) -> None:
    set_balance(connections, 10)
    event = await first_event(BalanceTrigger(min_balance=1000, poll_interval=0.3, timeout=time.time() + 1))
    assert event["status"] == "timeout" and event["balance"] == 10
    assert "1000" in event["message"]


async def test_trigger_missing_connection_is_an_error_event(connections: SandboxServer) -> None:
    event = await first_event(BalanceTrigger(min_balance=1, ihuyi_conn_id="no_such_conn"))
    assert event["status"] == "error" and "no_such_conn" in event["message"]


@pytest.mark.parametrize(("setting", "expected"), [(None, "False"), ("True", "True"), ("False", "False")])
def test_deferrable_follows_airflows_default_deferrable(setting: str | None, expected: str) -> None:
    """As the official providers' sensors: ``[operators] default_deferrable`` unless the task says."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"}
    if setting is not None:
        env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = setting
    code = (
        "from airflow_provider_sms.sensors.balance import BalanceSensor\n"
        "print(BalanceSensor(task_id='wait', min_balance=1).deferrable,"
        " BalanceSensor(task_id='poke', min_balance=1, deferrable=False).deferrable)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [expected, "False"]

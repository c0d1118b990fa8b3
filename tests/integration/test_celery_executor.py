"""The mapped example campaign on CeleryExecutor across two workers, one of them killed mid-campaign.

Started here, each a process of its own: Redis (the broker; Debian's ``redis-server``, see
``redisserver.py``), a private PostgreSQL (Airflow's metadata database, Celery's results, and the
campaign's shared ledger in a database of its own), the sandbox gateway, Airflow's api-server,
scheduler and dag-processor, and two ``airflow celery worker`` processes with separate
``AIRFLOW_HOME`` folders standing in for two machines. What they share is what machines would share:
the databases, the broker, and the chunk files' storage (the ``sms_chunk_base`` Variable).

While the three chunks are sending (the sandbox answers slowly), the process tree of the worker
running the most of them is SIGKILLed, like a lost machine. The scheduler fails those tries when
their heartbeats stop, and the retries run on the other worker. What a user checks afterwards is
asserted: no number texted twice, the numbers left unknown reported ``ambiguous`` and within the
documented bound, the final summaries adding up to what the gateway received, and nothing on the
dead worker's disk holding a number in clear.
"""

from __future__ import annotations

import collections
import json
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.components import ROOT, Stack
from tests.integration.helpers import (
    Stopwatch,
    deliveries,
    run_path,
    task_states,
    trigger,
    wait_for_run,
    xcom,
)
from tests.integration.redisserver import RedisServer, RedisUnavailable
from tests.pgserver import PostgresServer, PostgresUnavailable, free_port

if sys.version_info < (3, 11):
    pytest.skip("the Celery provider needs Python 3.11+", allow_module_level=True)

DAG_ID = "example_sms_mapped_campaign"
CHUNKS = 3  # the example's default: 3 overlapping chunks of 120 numbers, 320 distinct
CHUNK = [{f"139{i:08d}" for i in range(c * 100, c * 100 + 120)} for c in range(CHUNKS)]  # as it splits
AUDIENCE = set().union(*CHUNK)
OWN = [chunk - set().union(*(other for other in CHUNK if other is not chunk)) for chunk in CHUNK]
CONCURRENCY = 8  # the example's requests in flight per task
NUMBERS_PER_REQUEST = 1  # juncdt's default
LATENCY_MS = 1500  # the sandbox's answer time while the chunks send: about 25 s per chunk
WORKERS = ("worker-a", "worker-b")
# Every row of a chunk ends in one of these (no failure, nothing left unsent). `held`: an overlapping
# chunk, alive, was sending that number when this one ended; that chunk reports its outcome.
EXPECTED_OUTCOMES = ("accepted", "accepted_earlier", "ambiguous", "skipped", "held", "duplicate")
MOBILE = re.compile(rb"(?<!\d)1[3-9]\d{9}(?!\d)")  # a mainland mobile number in clear


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("celeryexec")
    pg = PostgresServer("airflow")
    redis = RedisServer(folder)
    stack: Stack | None = None
    try:
        try:
            pg.start()
            pg.create_database("sms_ledger")
            redis.start()
        except (PostgresUnavailable, RedisUnavailable) as exc:
            pytest.fail(f"the Celery scenario needs PostgreSQL and Redis: {exc}", pytrace=False)
        ledger = {
            "conn_type": "generic",
            # The documented URL form naming no driver: the ledger picks the installed one.
            "extra": {
                "sqlalchemy_url": f"postgresql://postgres@127.0.0.1:{pg.port}/sms_ledger",
                "hash_key": secrets.token_urlsafe(32),  # the same on every worker
            },
        }
        stack = Stack(
            folder,
            executor="CeleryExecutor",
            database_url=pg.url,  # Airflow also opens it through asyncpg (its async engine)
            components=("api-server", "scheduler", "dag-processor"),  # the example does not defer
            extra_env={
                "AIRFLOW__CELERY__BROKER_URL": redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{pg.url}",
                # A dead worker's tries are failed after 30 s without a heartbeat (default 300 s) and
                # retried once, a second later (the example sets no retries of its own).
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "1",
                "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
                "SMS_EXAMPLE_CHUNKS": str(CHUNKS),
                "SMS_EXAMPLE_LEDGER_CONN_ID": "sms_ledger",
                "AIRFLOW_CONN_SMS_LEDGER": json.dumps(ledger),
                # Storage both "machines" reach, as the example asks for workers on several machines.
                "AIRFLOW_VAR_SMS_CHUNK_BASE": f"file://{folder / 'shared' / 'chunks'}",
            },
        )
        clock = Stopwatch()
        stack.start([ROOT / "example_dags" / f"{DAG_ID}.py"])
        for name in WORKERS:
            start_worker(stack, name)
        for name in WORKERS:
            pattern = re.compile(rf"{name}@\S+ ready")
            stack.wait(lambda n=name, p=pattern: p.search(log_of(stack, n)), 120, f"{name} to be ready")
        stack.wait(lambda: dag_parsed(stack), 120, f"the dag-processor to parse {DAG_ID}")
        print(f"Celery stack up in {clock.elapsed:.1f}s ({stack.timings}); files in {folder}")
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        redis.stop()
        pg.stop()


def worker_home(stack: Stack, name: str) -> Path:
    return stack.folder / name / "airflow_home"


def start_worker(stack: Stack, name: str) -> None:
    """``airflow celery worker`` in an ``AIRFLOW_HOME`` of its own (its DAGs folder, logs, data)."""
    home = worker_home(stack, name)
    (home / "dags").mkdir(parents=True)
    (home / "dags" / f"{DAG_ID}.py").symlink_to(ROOT / "example_dags" / f"{DAG_ID}.py")
    (home / "data").mkdir()
    env = {
        **stack.env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "SMS_EXAMPLE_DATA_DIR": str(home / "data"),
        "AIRFLOW_VAR_SMS_REPORT_DIR": str(home / "data"),
    }
    argv = [sys.executable, "-m", "airflow", "celery", "worker", "--concurrency", "2"]
    stack.spawn(name, [*argv, "--celery-hostname", f"{name}@%h"], env=env)


def log_of(stack: Stack, name: str) -> str:
    return (stack.folder / f"{name}.log").read_text(encoding="utf-8", errors="replace")


def dag_parsed(stack: Stack) -> bool:
    found = stack.api("GET", "/api/v2/dags?limit=100")["dags"]
    return any(d["dag_id"] == DAG_ID for d in found)


def tries(stack: Stack, run_id: str) -> dict[int, tuple[str, int]]:
    """Each send_chunk instance's (state, try number), by map index."""
    found = stack.api("GET", run_path(DAG_ID, run_id) + "/taskInstances?task_id=send_chunk&limit=100")
    return {
        ti["map_index"]: (str(ti["state"]), ti["try_number"])
        for ti in found["task_instances"]
        if ti["task_id"] == "send_chunk"
    }


def chunks_on(stack: Stack, name: str, run_id: str, attempt: int) -> set[int]:
    """The map indexes whose try ``attempt`` ran on worker ``name``: its task logs are on its disk."""
    logs = worker_home(stack, name) / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=send_chunk"
    return {int(p.parent.name.split("=")[1]) for p in logs.glob(f"map_index=*/attempt={attempt}.log")}


def numbers_in_clear(folder: Path) -> dict[str, int]:
    """Files under ``folder`` holding a mobile number in clear, with how many (the numbers stay out of
    the message: the suite's leak scan reads it)."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        if hits := MOBILE.findall(path.read_bytes()):
            found[str(path.relative_to(folder))] = len(hits)
    return found


def test_a_worker_killed_mid_campaign_texts_nobody_twice(stack: Stack) -> None:
    stack.sandbox("POST", "/_sandbox/reset")
    stack.sandbox("POST", "/_sandbox/faults", {"latency_ms": LATENCY_MS})
    run = trigger(stack, DAG_ID)

    # Every chunk sending (two rounds of requests answered), each worker running at least one (two
    # slots each, three chunks).
    def sending() -> dict[str, set[int]] | None:
        states = tries(stack, run)
        running = {i for i, (state, _) in states.items() if state == "running"}
        placed = {name: chunks_on(stack, name, run, 1) & running for name in WORKERS}
        got = {d["number"] for d in deliveries(stack, "juncdt")}
        going = all(len(got & own) >= 2 * CONCURRENCY for own in OWN)
        return placed if len(running) == CHUNKS and all(placed.values()) and going else None

    placed = stack.wait(sending, 180, "the three chunks to be sending on both workers")
    victim, survivor = sorted(WORKERS, key=lambda name: -len(placed[name]))
    killed = placed[victim]
    sent_before = len(deliveries(stack, "juncdt"))
    process = stack.processes.pop(victim)  # its log stays in the folder; waits no longer watch it
    pids = process.kill_tree()
    clock = Stopwatch()
    print(f"killed {victim} ({len(pids)} processes) running chunks {sorted(killed)}, {sent_before} sent")
    stack.sandbox("POST", "/_sandbox/faults", {"latency_ms": 100})  # the retries need not be slow

    state = wait_for_run(stack, DAG_ID, run, timeout=300)
    print(f"run ended {state} {clock.elapsed:.1f}s after the kill")
    assert state == "success", f"{state}: {task_states(stack, DAG_ID, run)}{stack.logs()}"

    # The killed tries were retried, on the other worker.
    final = tries(stack, run)
    assert {i for i, (_, number) in final.items() if number == 2} == killed, final
    assert chunks_on(stack, survivor, run, 2) == killed
    assert chunks_on(stack, victim, run, 2) == set()

    # Nobody texted twice; every number delivered or reported ambiguous.
    sent = collections.Counter(d["number"] for d in deliveries(stack, "juncdt"))
    assert set(sent.values()) == {1}, "a number was texted twice"
    assert set(sent) <= AUDIENCE
    summaries = [xcom(stack, DAG_ID, run, "send_chunk", map_index=i) for i in range(CHUNKS)]
    total = collections.Counter[str]()
    print("final summaries:", json.dumps(summaries))
    for summary in summaries:
        outcomes = {k: summary[k] for k in EXPECTED_OUTCOMES}
        assert sum(outcomes.values()) == summary["total"] == 120, str(summary)
        total.update(outcomes)
    # Each number accepted is counted once, by the chunk that sent it (`accepted`, or `accepted_earlier`
    # in the retry of a killed try: told apart from `skipped`, which the other chunks report).
    accepted = total["accepted"] + total["accepted_earlier"]
    unknown = len(AUDIENCE) - accepted  # the numbers no summary reports accepted
    # They are the killed tries' requests in flight: at most concurrency x numbers per request each,
    # each reported ambiguous (by its chunk, and by an overlapping chunk that met it too).
    assert 0 < unknown <= len(killed) * CONCURRENCY * NUMBERS_PER_REQUEST, str(summaries)
    assert total["ambiguous"] >= unknown, str(summaries)
    # What the gateway received adds up: every number reported accepted, and some of the unknown ones
    # (a request in flight when its worker died may have arrived: the sandbox took it).
    assert accepted <= len(sent), (dict(total), len(sent))
    for i in killed:
        assert summaries[i]["accepted_earlier"] > 0, str(summaries[i])  # the killed try's sends, counted

    # The dead worker's disk holds no number in clear: logs mask them, the ledger keeps only hashes
    # (in the shared database), and a try writes nothing else there.
    home = worker_home(stack, victim)
    assert chunks_on(stack, victim, run, 1) >= killed  # its logs of the killed tries are there
    assert numbers_in_clear(home) == {}
    assert not MOBILE.search((stack.folder / f"{victim}.log").read_bytes())
    print(f"sent {len(sent)} of {len(AUDIENCE)}, summaries {dict(total)}, {unknown} unknown")

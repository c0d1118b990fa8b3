"""SKETCH, not yet run: the mapped campaign on CeleryExecutor, one worker killed mid-campaign.

Redis (Debian ``redis-server``) and a private PostgreSQL (metadata database, Celery results and the
shared ledger) are started here; two ``airflow celery worker`` processes with separate
``AIRFLOW_HOME`` folders share the work. One worker's process tree is SIGKILLed while its chunk is
sending; the scheduler fails that try (heartbeat timeout) and the retry runs on the other worker.
Promise checked: each number at most once, every number delivered or ambiguous.

Skipped unless the Celery provider, asyncpg (Airflow's async engine on PostgreSQL) and redis-server
are installed: ``apache-airflow-providers-celery==3.26.0`` (``celery[redis]>=5.5,<6``, Python 3.11+).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator

import pytest

from tests.integration.components import ROOT, Stack
from tests.integration.helpers import deliveries, trigger, wait_for_run
from tests.pgserver import PostgresServer, free_port

pytest.importorskip("airflow.providers.celery")
pytest.importorskip("asyncpg")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

CHUNKS = 3


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("celery")
    with PostgresServer("airflow") as pg:
        redis_port = free_port()
        sync_url = pg.url.replace("postgresql+psycopg2", "postgresql")
        stack = Stack(
            folder,
            database_url=pg.url,
            extra_env={
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sync_url}",
                # A killed worker's task is failed after this many seconds without a heartbeat.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "1",
                "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
                "SMS_EXAMPLE_CHUNKS": str(CHUNKS),
                "SMS_EXAMPLE_LEDGER_CONN_ID": "sms_ledger",
                "AIRFLOW_CONN_SMS_LEDGER": json.dumps(
                    {"conn_type": "generic", "extra": {"sqlalchemy_url": pg.url}}
                ),
            },
        )
        try:
            stack.spawn(
                "redis",
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            )
            stack.start(sorted((ROOT / "example_dags").glob("*.py")))
            for name in ("worker-1", "worker-2"):
                home = folder / name
                (home / "dags").mkdir(parents=True)
                env = {**stack.env, "AIRFLOW_HOME": str(home)}  # its own home, logs, send journals
                argv = [sys.executable, "-m", "airflow", "celery", "worker", "--concurrency", "2"]
                stack.spawn(name, [*argv, "--celery-hostname", f"{name}@%h"], env=env)
            yield stack
        finally:
            stack.stop()


def test_a_worker_killed_mid_campaign_texts_nobody_twice(celery_stack: Stack) -> None:
    stack = celery_stack
    stack.sandbox("POST", "/_sandbox/reset")
    stack.sandbox("POST", "/_sandbox/faults", {"latency_ms": 200})  # a chunk takes ~25 s
    run = trigger(stack, "example_sms_mapped_campaign")
    stack.wait(lambda: len(deliveries(stack, "juncdt")) >= 30, 120, "the campaign to get going")
    victim = stack.processes["worker-1"]
    assert victim.popen is not None
    os.killpg(victim.popen.pid, 9)  # the worker and the task processes it started
    stack.sandbox("POST", "/_sandbox/faults", {"latency_ms": 0})
    state = wait_for_run(stack, "example_sms_mapped_campaign", run, timeout=240)
    assert state == "success", stack.logs()
    sent = [d["number"] for d in deliveries(stack, "juncdt")]
    assert len(sent) == len(set(sent)), "a number was texted twice"
    assert len(set(sent)) >= 320 - 8 * 1  # at most the killed try's in-flight requests are unknown

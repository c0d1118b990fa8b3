"""Fixtures and setup: an isolated AIRFLOW_HOME, a sandbox gateway on loopback, connections to it, a
PostgreSQL server, the leak scan. What tests call is in ``tests/helpers.py``."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Airflow reads its configuration at import: isolate it before anything imports airflow.
_HOME = Path(os.environ.get("SMS_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="sms-airflow-"))
os.environ["SMS_TEST_AIRFLOW_HOME"] = str(_HOME)  # one home even if this module is imported twice
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# dag.test() runs DAGs found in the DAGs folder: the examples and the tests' own DAGs, linked together.
_DAGS = _HOME / "dags"
_DAGS.mkdir(parents=True, exist_ok=True)
for _source in [*(ROOT / "example_dags").glob("*.py"), *(ROOT / "tests" / "dags").glob("*.py")]:
    _link = _DAGS / _source.name
    if not _link.exists():
        _link.symlink_to(_source)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS)
os.environ.setdefault("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
# dag.test()'s in-process Execution API on Airflow 3.2 starts only with a JWT secret configured (3.3
# needs none there). The airflow.cfg that `airflow db migrate` writes has one, but this process read
# its configuration before that file existed.
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(16))

from airflow_provider_sms.sandbox.server import SandboxServer  # noqa: E402
from tests.pgserver import PostgresServer, PostgresUnavailable  # noqa: E402

# The leak scan runs at the end of every run; pytester lets a test run pytest on planted files.
pytest_plugins = ["tests.leak_scan", "pytester"]


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def gw(sandbox: SandboxServer) -> Iterator[SandboxServer]:
    """The sandbox, reset to its defaults before each test."""
    from tests.helpers import control

    control(sandbox, "POST", "/_sandbox/reset")
    yield sandbox


@pytest.fixture
def connections(gw: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """``ihuyi_default`` and ``juncdt_default`` pointing at the sandbox (Airflow's JSON env-var form)."""
    from tests.helpers import ihuyi_conn, juncdt_conn, set_conn

    set_conn(monkeypatch, "ihuyi_default", ihuyi_conn(gw.url))
    set_conn(monkeypatch, "juncdt_default", juncdt_conn(gw.url))
    return gw


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL for the session ($SMS_TEST_POSTGRES_URL, else a private server). Never skipped:
    without PostgreSQL the concurrency guarantees would go untested, so the tests fail, saying why."""
    if url := os.environ.get("SMS_TEST_POSTGRES_URL"):
        yield url
        return
    server = PostgresServer()
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed by the ledger tests: {exc}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata database (SQLite in the test AIRFLOW_HOME), for real DAG runs."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _HOME

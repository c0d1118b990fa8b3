"""Shared fixtures: an isolated AIRFLOW_HOME, a sandbox gateway on loopback, connections to it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

from airflow_provider_sms.sandbox.accounts import (  # noqa: E402
    IHUYI_ACCOUNT,
    IHUYI_PASSWORD,
    JUNCDT_ACCESS_KEY,
    JUNCDT_ACCESS_SECRET,
    JUNCDT_PACKAGE_CODE,
)
from airflow_provider_sms.sandbox.server import SandboxServer  # noqa: E402
from tests.pgserver import PostgresServer, PostgresUnavailable  # noqa: E402

SECRETS = (IHUYI_PASSWORD, JUNCDT_ACCESS_SECRET, JUNCDT_PACKAGE_CODE)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def gw(sandbox: SandboxServer) -> Iterator[SandboxServer]:
    """The sandbox, reset to its defaults before each test."""
    control(sandbox, "POST", "/_sandbox/reset")
    yield sandbox


def control(server: SandboxServer, method: str, path: str, body: Any = None) -> Any:
    import httpx

    response = httpx.request(method, server.url + path, json=body, timeout=10)
    response.raise_for_status()
    return response.json() if response.content else None


def ihuyi_conn(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "conn_type": "ihuyi",
        "host": url,
        "login": IHUYI_ACCOUNT,
        "password": IHUYI_PASSWORD,
        # Quiet hours off: the suite passes at any hour; the policy tests set their own window.
        "extra": {"pid": 1, "timeout": 5, "quiet_hours": "off", **extra},
    }


def juncdt_conn(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "conn_type": "juncdt",
        "host": url,
        "login": JUNCDT_ACCESS_KEY,
        "password": JUNCDT_ACCESS_SECRET,
        "extra": {
            "classification_secret": JUNCDT_PACKAGE_CODE,
            "sign_code": "SIGN01",
            "timeout": 5,
            "quiet_hours": "off",
            **extra,
        },
    }


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def connections(gw: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """``ihuyi_default`` and ``juncdt_default`` pointing at the sandbox (Airflow's JSON env-var form)."""
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


@dataclass
class DagRunResult:
    """What a user checks after a run: the run's state, each task's state, XComs, and what Airflow's
    Rendered Template view shows of each task."""

    state: str
    tasks: dict[tuple[str, int], str]
    xcoms: dict[tuple[str, int, str], Any]
    rendered: dict[tuple[str, int], Any]

    def task(self, task_id: str, map_index: int = -1) -> str:
        return self.tasks[(task_id, map_index)]

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        return self.xcoms.get((task_id, map_index, key))


def run_dag(dag_id: str, **kwargs: Any) -> DagRunResult:
    """Run a DAG of the DAGs folder through real Airflow task execution (``dag.test()``)."""
    import importlib.util

    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rtif
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from tests.airflow32 import keep_in_process_api_alive

    keep_in_process_api_alive()
    for path in sorted(_DAGS.glob("*.py")):
        if f'"{dag_id}"' not in path.read_text(encoding="utf-8"):
            continue
        spec = importlib.util.spec_from_file_location(f"dagfile_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag = next(
            v for v in vars(module).values() if getattr(v, "dag_id", None) == dag_id and hasattr(v, "test")
        )
        break
    else:
        raise LookupError(dag_id)
    run = dag.test(**kwargs)
    with create_session() as session:
        tasks = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances(session=session)}
        rows = (
            session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id).all()
        )
        xcoms = {(r.task_id, r.map_index, r.key): r.value for r in rows}
        fields = session.query(Rtif).filter(Rtif.dag_id == dag_id, Rtif.run_id == run.run_id).all()
        rendered = {(r.task_id, r.map_index): r.rendered_fields for r in fields}
    return DagRunResult(str(run.state), tasks, xcoms, rendered)


def force(
    server: SandboxServer, gateway: str, method: str, code: str, *, msg: str | None = None, times: int = 1
) -> None:
    """Make the sandbox answer the next ``times`` calls of ``gateway``/``method`` with ``code``."""
    control(
        server,
        "POST",
        "/_sandbox/force",
        {"gateway": gateway, "method": method, "code": code, "msg": msg, "times": times},
    )


def deliveries(server: SandboxServer, gateway: str | None = None) -> list[dict[str, Any]]:
    path = "/_sandbox/deliveries" + (f"?gateway={gateway}" if gateway else "")
    result = control(server, "GET", path)
    return list(result["deliveries"] if isinstance(result, dict) else result)


# Everything the suite's tests printed or logged (Airflow task logs included), every failure text and
# every exception a test expected with `pytest.raises`, for the leak scan that runs last
# (tests/test_zz_leaks.py). RAN names every test that ran, so the scan knows what it covers.
CAPTURED: list[tuple[str, str, str]] = []
RAN: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    RAN.add(report.nodeid)
    for section, content in report.sections:
        if report.when == "call" or section.endswith(report.when):  # each phase repeats the earlier ones
            CAPTURED.append((report.nodeid, section, content))
    if report.longrepr is not None:
        CAPTURED.append((report.nodeid, "exception", str(report.longrepr)))


def _exception_texts(error: BaseException | None) -> str:
    """The type and message of an exception and of everything chained to it (what a user would see)."""
    texts: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts.append(f"{type(error).__name__}: {error}")
        # As a traceback shows it: the cause, else the context unless ``raise ... from None`` hid it.
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return "\n".join(texts)


class _RecordingRaises:
    """Wraps `pytest.raises(...)` used as a context manager to record the expected exception's text."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __enter__(self) -> Any:
        return self._inner.__enter__()

    def __exit__(self, *exc_info: Any) -> Any:
        suppressed = self._inner.__exit__(*exc_info)
        if exc_info[1] is not None:
            node = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
            CAPTURED.append((node, "exception", _exception_texts(exc_info[1])))
        return suppressed


_pytest_raises = pytest.raises


def _recording_raises(*args: Any, **kwargs: Any) -> Any:
    result = _pytest_raises(*args, **kwargs)
    return _RecordingRaises(result) if hasattr(result, "__exit__") else result


pytest.raises = _recording_raises  # type: ignore[assignment]

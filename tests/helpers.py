"""What the tests share: connections to the sandbox, its control API, gateway clients, campaigns, DAG runs.

Imported by tests as ``tests.helpers``; ``conftest.py`` holds only the fixtures and the test setup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_sms.dispatch.engine import Campaign, CampaignOptions
from airflow_provider_sms.dispatch.recipients import Cleaner, rows_from_items
from airflow_provider_sms.dispatch.retry import RetryPolicy
from airflow_provider_sms.dispatch.senders import MmsSender, SmsSender
from airflow_provider_sms.gateways.ihuyi import IhuyiClient
from airflow_provider_sms.gateways.juncdt import JuncdtClient
from airflow_provider_sms.gateways.transport import HttpSettings
from airflow_provider_sms.sandbox.accounts import (
    IHUYI_ACCOUNT,
    IHUYI_PASSWORD,
    JUNCDT_ACCESS_KEY,
    JUNCDT_ACCESS_SECRET,
    JUNCDT_PACKAGE_CODE,
)
from tests.leak_scan import CAPTURED, current_test, exception_texts

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.dispatch.report import ReportWriter
    from airflow_provider_sms.dispatch.sql_ledger import SqlLedger
    from airflow_provider_sms.sandbox.server import SandboxServer

ROOT = Path(__file__).resolve().parent.parent
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


@contextmanager
def raises(
    expected: type[BaseException] | tuple[type[BaseException], ...], *, match: str | None = None
) -> Iterator[pytest.ExceptionInfo[BaseException]]:
    """``pytest.raises`` whose exception the leak scan also reads: an error a user would see must not
    carry a secret or an unmasked number either."""
    with pytest.raises(expected, match=match) as info:  # noqa: TID251 - the one wrapper
        yield info
    CAPTURED.append((current_test(), "exception", exception_texts(info.value)))


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


@dataclass
class DagRunResult:
    """What a user checks after a run: the run's state, each task's state, XComs, and what Airflow's
    Rendered Template view shows of each task."""

    state: str
    tasks: dict[tuple[str, int], str]
    xcoms: dict[tuple[str, int, str], Any]
    rendered: dict[tuple[str, int], Any]
    tries: dict[tuple[str, int], int]  # how many times each task ran

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
    for path in sorted((Path(os.environ["AIRFLOW_HOME"]) / "dags").glob("*.py")):
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
        instances = run.get_task_instances(session=session)
        tasks = {(ti.task_id, ti.map_index): str(ti.state) for ti in instances}
        tries = {(ti.task_id, ti.map_index): int(ti.try_number) for ti in instances}
        rows = (
            session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id).all()
        )
        xcoms = {(r.task_id, r.map_index, r.key): r.value for r in rows}
        fields = session.query(Rtif).filter(Rtif.dag_id == dag_id, Rtif.run_id == run.run_id).all()
        rendered = {(r.task_id, r.map_index): r.rendered_fields for r in fields}
    return DagRunResult(str(run.state), tasks, xcoms, rendered, tries)


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


def delivered(server: SandboxServer) -> int:
    """How many numbers the sandbox has delivered, all gateways."""
    return int(control(server, "GET", "/_sandbox/deliveries/count")["total"])


# ``sms_test_kill`` (tests/dags) under ``dag.test()``, in a process of its own that a test kills.
KILL_DAG_RUNNER = """
import json, sys
from datetime import datetime, timezone
sys.path.insert(0, {dags!r})
sys.path.insert(0, {root!r})
from tests.airflow32 import keep_in_process_api_alive
keep_in_process_api_alive()
import importlib
module = importlib.import_module("sms_test_dags")
when = datetime.fromisoformat({when!r})
run = module.kill_dag.test(logical_date=when, run_after=when)
print("RUN-STATE", run.state)
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
with create_session() as session:
    row = session.query(XComModel).filter(XComModel.dag_id == "sms_test_kill", XComModel.run_id == run.run_id,
                                          XComModel.key == "summary").one()
    print("SUMMARY", json.dumps(row.value))
"""


def start_kill_dag(logical_date: str) -> subprocess.Popen[str]:
    """Run ``sms_test_kill`` for ``logical_date`` (ISO, with its zone) in a new session, so that
    ``os.killpg`` kills the whole task; its output (``RUN-STATE <state>``, ``SUMMARY <json>``)
    is read with ``run_summary``."""
    dags = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
    return subprocess.Popen(
        [sys.executable, "-c", KILL_DAG_RUNNER.format(dags=dags, root=str(ROOT), when=logical_date)],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run_summary(output: str) -> dict[str, Any]:
    """The summary a ``start_kill_dag`` run printed."""
    return dict(json.loads(next(line for line in output.splitlines() if line.startswith("SUMMARY "))[8:]))


def ihuyi(server: SandboxServer, timeout: float = 5.0, password: str = IHUYI_PASSWORD) -> IhuyiClient:
    return IhuyiClient(IHUYI_ACCOUNT, password, HttpSettings(server.url, timeout=timeout), default_pid=1)


def juncdt(server: SandboxServer, timeout: float = 5.0) -> JuncdtClient:
    return JuncdtClient(
        JUNCDT_ACCESS_KEY,
        JUNCDT_ACCESS_SECRET,
        JUNCDT_PACKAGE_CODE,
        HttpSettings(server.url, timeout=timeout),
        default_sign_code="SIGN01",
    )


def numbers(n: int, start: int = 0) -> list[str]:
    return [f"138{start + i:08d}" for i in range(n)]


async def run_mms(
    server: SandboxServer,
    items: list[Any],
    *,
    per_request: int = 100,
    report: ReportWriter | None = None,
    **options: Any,
) -> Summary:
    sender = MmsSender(ihuyi(server), "1001", pid=1, send_time="", numbers_per_request=per_request)
    opts = CampaignOptions(**{"concurrency": 8, "retry": FAST_RETRY, **options})
    return await Campaign(
        sender, lambda: rows_from_items(items), lambda: Cleaner(use_params=False), opts, report=report
    ).run()


async def run_sms(
    server: SandboxServer,
    items: list[Any],
    *,
    per_request: int = 1,
    params: dict[str, str] | None = None,
    report: ReportWriter | None = None,
    template: str = "TPL_CODE",
    ledger: SqlLedger | None = None,
    **options: Any,
) -> Summary:
    sender = SmsSender(juncdt(server), template, sign_code=None, numbers_per_request=per_request)
    opts = CampaignOptions(**{"concurrency": 8, "retry": FAST_RETRY, **options})
    return await Campaign(
        sender,
        lambda: rows_from_items(items),
        lambda: Cleaner(shared_params=params),
        opts,
        report=report,
        ledger=ledger,
    ).run()

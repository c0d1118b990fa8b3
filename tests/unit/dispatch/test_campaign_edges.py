"""The campaign's edges: bad answers to multi-number requests, a gateway that swallows requests, a
campaign nobody received, and a refused task that must leave nothing open behind it."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import control, deliveries, force, numbers, run_dag, run_mms, run_sms


async def test_one_bad_number_rejects_only_itself_not_its_batch(gw: SandboxServer) -> None:
    # juncdt refuses a whole 100-number request for one number it does not serve (30018): the request
    # is sent again in halves until the bad number stands alone.
    control(gw, "POST", "/_sandbox/accounts", {"juncdt": {"unsupported_prefixes": ["1700"]}})
    audience = numbers(300)
    audience[150] = "17000000150"
    summary = await run_sms(gw, audience, per_request=100, params={"code": "1"})
    assert summary.counts["rejected"] == 1 and summary.counts["accepted"] == 299
    assert {d["number"] for d in deliveries(gw, "juncdt")} == set(audience) - {"17000000150"}
    assert any("30018" in reason for reason in summary.reasons)
    assert summary.stopped is None


async def test_a_number_at_its_daily_limit_does_not_hold_back_its_batch(gw: SandboxServer) -> None:
    control(
        gw, "POST", "/_sandbox/accounts", {"juncdt": {"daily_limit": 1, "daily_sent": {"13800000007": 1}}}
    )
    summary = await run_sms(gw, numbers(50), per_request=50, params={"code": "1"})
    assert summary.counts["rejected"] == 1 and summary.counts["accepted"] == 49
    assert "13800000007" not in {d["number"] for d in deliveries(gw, "juncdt")}


async def test_an_ihuyi_409_batch_is_split_until_the_refused_number_stands_alone(gw: SandboxServer) -> None:
    # The gateway refuses the 4-number request, then its first half, then that half's first number:
    # only that number ends rejected, the three others go out.
    force(gw, "ihuyi", "SendMms", "409", times=3)
    summary = await run_mms(gw, numbers(4), per_request=4, concurrency=1)
    assert summary.counts["rejected"] == 1 and summary.counts["accepted"] == 3
    assert summary.requests == 5  # the batch, its halves, the first half's halves
    assert {d["number"] for d in deliveries(gw, "ihuyi")} == set(numbers(4)[1:])


async def test_consecutive_ambiguous_requests_trip_the_breaker(gw: SandboxServer) -> None:
    # Every request is read, delivered, and its connection reset before the answer: each ends
    # ambiguous. After max_consecutive_ambiguous in a row the campaign stops instead of going on.
    control(gw, "POST", "/_sandbox/faults", {"reset_rate": 1.0})
    summary = await run_sms(
        gw, numbers(200), params={"code": "1"}, concurrency=2, max_consecutive_ambiguous=10
    )
    assert summary.stopped is not None and "10 requests in a row ended ambiguous" in summary.stopped
    assert summary.stop_retryable
    # The requests already in flight when it tripped end as they end; nobody else is tried.
    assert 10 <= summary.counts["ambiguous"] <= 10 + 2
    assert summary.counts["ambiguous"] + summary.counts["not_sent"] == 200
    assert len(deliveries(gw)) == summary.counts["ambiguous"]


async def test_the_breaker_can_be_turned_off(gw: SandboxServer) -> None:
    control(gw, "POST", "/_sandbox/faults", {"reset_rate": 1.0})
    summary = await run_sms(gw, numbers(30), params={"code": "1"}, concurrency=2, max_consecutive_ambiguous=0)
    assert summary.stopped is None and summary.counts["ambiguous"] == 30


pytest_operator = pytest.mark.usefixtures("airflow_db")


@pytest_operator
def test_a_campaign_nobody_received_fails_the_task(connections: SandboxServer) -> None:
    control(connections, "POST", "/_sandbox/accounts", {"juncdt": {"unsupported_prefixes": ["1380"]}})
    result = run_dag("sms_test_sms", run_conf={"recipients": numbers(5)})
    assert result.task("send") == "failed"
    summary = result.xcom("send", key="summary")
    assert summary["rejected"] == 5 and summary["accepted"] == 0
    assert deliveries(connections) == []


def ledger_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sms-ledger")]


@pytest_operator
def test_a_refused_task_leaves_no_ledger_process_or_file(connections: SandboxServer, tmp_path: Path) -> None:
    # Bad arguments are refused before the ledger (its thread, its connection, a lease) is opened.
    db = Path(os.environ["AIRFLOW_HOME"]) / "sms_ledger.db"
    report = tmp_path / "report.csv"
    conf = {"recipients": numbers(3), "template_code": "", "report_uri": str(report)}
    for _ in range(2):
        result = run_dag("sms_test_sms", run_conf=conf)
        assert result.task("send") == "failed"
    assert not ledger_threads()
    if db.exists():
        with sqlite3.connect(db) as conn:
            owners = conn.execute(
                "SELECT owner FROM sms_ledger_owners WHERE owner LIKE 'sms_test_sms/%'"
            ).fetchall()
        assert owners == []
    assert not report.exists()
    assert deliveries(connections) == []

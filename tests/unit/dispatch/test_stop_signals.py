"""Stop means stop: execution_timeout, SIGTERM ("Mark failed", a kill, a worker shutdown) and on_kill
end a campaign promptly, through real Airflow task runs, with every recipient's outcome recorded."""

from __future__ import annotations

import asyncio
import collections
import csv
import os
import signal
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.dispatch.engine import Campaign, CampaignOptions, stop_running
from airflow_provider_sms.dispatch.recipients import Cleaner, rows_from_items
from airflow_provider_sms.dispatch.senders import MmsSender
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import control, delivered, ihuyi, run_dag, run_summary, start_kill_dag

pytestmark = pytest.mark.usefixtures("airflow_db")

PROMPT = 0.2  # no new request may start later than this after the stop
# A request that started in time reaches the sandbox's log a little later on a busy 2-core machine.
SLACK = 0.1
OUTCOMES = ("accepted", "rejected", "failed", "ambiguous", "skipped", "not_sent", "duplicate")


def task_time(line: str) -> float:
    """The wall-clock time of a task log line (Airflow's lines start with an ISO timestamp)."""
    stamp = line.split(maxsplit=1)[0].rstrip("Z")
    return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()


def requests_at(server: SandboxServer) -> list[float]:
    """When each gateway request reached the sandbox (wall clock)."""
    return [r["at"] for r in control(server, "GET", "/_sandbox/requests")["requests"]]


def open_leases(task: str) -> list[str]:
    """Tries of tasks named from ``task`` on whose ledger lease is still registered (a ledger closed
    ends its lease; a killed try's stays until it is pruned)."""
    with sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "sms_ledger.db") as db:
        rows = db.execute("SELECT owner FROM sms_ledger_owners WHERE owner LIKE ?", (f"{task}%",))
        return [owner for (owner,) in rows]


def ledger_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sms-ledger")]


def test_execution_timeout_stops_the_campaign(
    connections: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "report.csv"
    monkeypatch.setenv("AIRFLOW_VAR_SMS_STOP_REPORT", str(report))
    control(connections, "POST", "/_sandbox/faults", {"latency_ms": 50})
    result = run_dag("sms_test_timeout")
    assert result.task("send") == "failed"  # not SUCCESS after sending everyone, as it used to
    summary = result.xcom("send", key="summary")
    assert summary is not None, "the summary XCom must be pushed when the timeout stops the campaign"
    assert "execution_timeout" in summary["stopped"]
    # Every recipient has exactly one outcome, in the summary and in the report.
    assert sum(summary[k] for k in OUTCOMES) == summary["total"] == 6000
    assert 0 < summary["accepted"] < 6000 and summary["not_sent"] > 0
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    assert len(rows) == 6000
    assert report.stat().st_mode & 0o777 == 0o600  # its owner's only, like the ledger
    assert collections.Counter(r["outcome"] for r in rows) == {k: summary[k] for k in OUTCOMES if summary[k]}
    # No request started later than PROMPT after the 3 s timeout (6,000 numbers at this pace take 8 s).
    at = requests_at(connections)
    assert at[-1] - at[0] <= 3 + PROMPT + SLACK
    # What the sandbox delivered is what the summary says went out (or may have).
    assert summary["accepted"] <= delivered(connections) <= summary["accepted"] + summary["ambiguous"]
    assert not open_leases("sms_test_timeout/") and not ledger_threads()  # the ledger was closed


def test_sigterm_stops_sending_within_the_kill_grace(connections: SandboxServer) -> None:
    # Airflow sends SIGTERM on "Mark failed", a kill from the UI or a worker shutdown, and SIGKILL
    # five seconds later: the campaign must stop sending at once and record everyone before that.
    control(connections, "POST", "/_sandbox/faults", {"latency_ms": 40})
    runner = start_kill_dag("2026-11-21T00:00:00+00:00")
    try:
        deadline = time.monotonic() + 120
        while delivered(connections) < 1000:
            assert runner.poll() is None, runner.stdout.read() if runner.stdout else ""
            assert time.monotonic() < deadline, "the campaign never got going"
            time.sleep(0.02)
        signalled = time.time()
        os.kill(runner.pid, signal.SIGTERM)  # the task's process, as Airflow's supervisor does
        output, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    late = [t - signalled for t in requests_at(connections) if t > signalled + PROMPT + SLACK]
    assert not late, f"{len(late)} request(s) started after the signal: {late[:5]}"
    assert "RUN-STATE failed" in output, output[-3000:]
    # The task was done (summary pushed, report and ledger closed, state sent) well before the
    # SIGKILL Airflow sends five seconds after SIGTERM.
    ended = next(line for line in output.splitlines() if "[DAG TEST] end task" in line)
    assert task_time(ended) - signalled < 5, output[-3000:]
    summary = run_summary(output)
    assert "SIGTERM" in summary["stopped"]
    assert sum(summary[k] for k in OUTCOMES) == summary["total"] == 5000
    count = delivered(connections)
    assert summary["accepted"] <= count <= summary["accepted"] + summary["ambiguous"]
    assert count < 5000
    # The ledger was closed before the task ended: its lease ended with it (no other task need wait).
    assert not open_leases("sms_test_kill/send/manual__2026-11-21")  # this run's (not a killed one's)


async def run_in_thread_and_stop(gw: SandboxServer) -> tuple[float, Any]:
    """A campaign on another thread (as a hook's send_bulk in a @task's thread would be), stopped
    from this one with ``stop_running`` (what ``on_kill`` calls)."""
    sender = MmsSender(ihuyi(gw), "1001", pid=1, send_time="", numbers_per_request=10)
    audience = [f"137{i:08d}" for i in range(4000)]
    options = CampaignOptions(concurrency=4, stop_grace=0.5)
    campaign = Campaign(sender, lambda: rows_from_items(audience), lambda: Cleaner(use_params=False), options)
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(summary=asyncio.run(campaign.run())))
    thread.start()
    while delivered(gw) < 500:
        await asyncio.sleep(0.01)
    stopped = time.time()
    stop_running("the task was killed (on_kill)")
    thread.join(10)
    assert not thread.is_alive()
    return stopped, box["summary"]


async def test_on_kill_stops_a_campaign_on_another_thread(gw: SandboxServer) -> None:
    control(gw, "POST", "/_sandbox/faults", {"latency_ms": 40})
    stopped, summary = await run_in_thread_and_stop(gw)
    assert not [t for t in requests_at(gw) if t > stopped + PROMPT + SLACK]
    assert summary.stopped == "the task was killed (on_kill)"
    assert summary.total == 4000 and summary.counts["not_sent"] > 0


async def test_requests_hanging_past_the_grace_end_ambiguous(gw: SandboxServer) -> None:
    # Requests that do not answer within the grace are given up: ambiguous (they may have been
    # delivered), never sent again, and the campaign ends right after the grace.
    control(gw, "POST", "/_sandbox/faults", {"latency_ms": 40})
    sender = MmsSender(ihuyi(gw), "1001", pid=1, send_time="", numbers_per_request=10)
    audience = [f"139{i:08d}" for i in range(2000)]
    options = CampaignOptions(concurrency=4, stop_grace=0.3)
    campaign = Campaign(sender, lambda: rows_from_items(audience), lambda: Cleaner(use_params=False), options)
    task = asyncio.ensure_future(campaign.run())
    while delivered(gw) < 200:
        await asyncio.sleep(0.01)
    control(gw, "POST", "/_sandbox/faults", {"latency_ms": 10_000})  # what is in flight now hangs
    await asyncio.sleep(0.1)
    began = time.monotonic()
    campaign.request_stop("stop now")
    summary = await asyncio.wait_for(task, 5)
    assert time.monotonic() - began < 0.3 + 1.0
    assert summary.counts["ambiguous"] > 0, (summary.counts, summary.reasons, summary.stopped)
    assert summary.total == 2000
    assert sum(summary.counts.values()) == 2000


async def test_a_campaign_held_by_retry_after_stops_at_once(gw: SandboxServer) -> None:
    # The gateway asked for a minute's pause (429 + Retry-After): every worker waits, none in flight.
    # A stop must not wait out that minute, and the numbers held back end not_sent.
    faults = {"http_error_status": 429, "retry_after": "60", "http_error_times": 1}
    control(gw, "POST", "/_sandbox/faults", faults)
    sender = MmsSender(ihuyi(gw), "1001", pid=1, send_time="", numbers_per_request=10)
    audience = [f"136{i:08d}" for i in range(400)]
    options = CampaignOptions(concurrency=4, stop_grace=0.3)
    campaign = Campaign(sender, lambda: rows_from_items(audience), lambda: Cleaner(use_params=False), options)
    task = asyncio.ensure_future(campaign.run())
    while not control(gw, "GET", "/_sandbox/requests")["requests"]:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # the 429 is back and the hold has begun
    began = time.monotonic()
    campaign.request_stop("stop now")
    summary = await asyncio.wait_for(task, 5)
    assert time.monotonic() - began < 0.3 + 1.0
    assert summary.total == 400 and sum(summary.counts.values()) == 400
    assert summary.counts["accepted"] <= 30  # the three requests in flight with the refused one
    assert summary.counts["not_sent"] >= 370
    assert delivered(gw) == summary.counts["accepted"]

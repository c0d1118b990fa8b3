"""Nobody texted twice, nobody lost: crashes, fault mixes, shared ledgers, fatal stops.

Everything goes over real sockets to the sandbox, and through real Airflow task execution where a
user would meet it (a killed worker, a retry, a mapped campaign)."""

from __future__ import annotations

import collections
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import (
    control,
    delivered,
    deliveries,
    ihuyi_conn,
    run_dag,
    run_summary,
    set_conn,
    start_kill_dag,
)
from tests.pgserver import PostgresServer

pytestmark = pytest.mark.usefixtures("airflow_db")

KILL_DATE = "2026-11-20T00:00:00+00:00"


def test_kill_9_mid_campaign_then_retry_texts_nobody_twice(connections: SandboxServer) -> None:
    control(connections, "POST", "/_sandbox/faults", {"latency_ms": 40})
    first = start_kill_dag(KILL_DATE)
    deadline = time.monotonic() + 120
    while delivered(connections) < 1500:
        assert first.poll() is None, first.stdout.read() if first.stdout else ""
        assert time.monotonic() < deadline, "the campaign never got going"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(30)
    assert first.returncode == -signal.SIGKILL
    delivered_before = delivered(connections)
    assert 1500 <= delivered_before < 5000

    control(connections, "POST", "/_sandbox/faults", {"latency_ms": 0})
    second = start_kill_dag(KILL_DATE)
    output, _ = second.communicate(timeout=300)
    assert "RUN-STATE success" in output, output[-3000:]

    sent = [d["number"] for d in deliveries(connections, "ihuyi")]
    assert len(sent) == len(set(sent)), "a number was texted twice"
    missing = {f"135{i:08d}" for i in range(5000)} - set(sent)
    # Only batches marked sending without a committed outcome can be unknown. Each of the campaign's
    # concurrency workers holds at most one: in flight, or answered with its outcome not yet committed
    # (committed with its next mark, which it waits for). At most concurrency x batch size: 4 x 10.
    most_unknown = 4 * 10
    assert len(missing) <= most_unknown
    summary = run_summary(output)
    # The second run took the dead try's claims over once its lease ran out (3 s): it reported what
    # was accepted before (by an earlier try of this task instance, or by another run of the campaign),
    # reported the unknown ones as ambiguous, and sent the rest. Nobody is left "held".
    earlier = summary["accepted_earlier"] + summary["skipped"]
    assert summary["accepted"] + earlier + summary["ambiguous"] == 5000 and summary["held"] == 0
    assert summary["ambiguous"] <= most_unknown and len(missing) <= summary["ambiguous"]
    # Delivered before the kill but not reported as such: the unknown ones the sandbox had received.
    assert earlier >= delivered_before - most_unknown
    # The summaries add up to what was sent: before the kill, and by this run.
    assert earlier + summary["accepted"] <= len(sent) <= earlier + summary["accepted"] + summary["ambiguous"]


def test_fault_mix_every_number_one_outcome(
    connections: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, "ihuyi_default", ihuyi_conn(connections.url, timeout=1))
    control(
        connections,
        "POST",
        "/_sandbox/faults",
        {
            "http_5xx_rate": 0.10,
            "reset_rate": 0.05,
            "hang_rate": 0.02,
            "malformed_rate": 0.01,
            "seed": 2026,
            "hang_seconds": 5,
        },
    )
    report = tmp_path / "report.csv"
    result = run_dag("sms_test_faults", run_conf={"report_uri": str(report)})
    summary = result.xcom("send", key="summary")
    counts = {
        k: summary[k]
        for k in ("accepted", "rejected", "failed", "ambiguous", "skipped", "not_sent", "duplicate")
    }
    assert sum(counts.values()) == summary["total"] == 10_000
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    assert len(rows) == 10_000
    assert collections.Counter(r["outcome"] for r in rows) == {k: v for k, v in counts.items() if v}
    assert len({r["row"] for r in rows}) == 10_000  # every input row exactly once
    sent = [d["number"] for d in deliveries(connections, "ihuyi")]
    assert len(sent) == len(set(sent)), "a number was texted twice"
    # The sandbox delivered what was accepted, and (worst case) what the client could not confirm.
    assert len(sent) == counts["accepted"] + counts["ambiguous"]
    assert counts["ambiguous"] > 0 and counts["accepted"] > 8_000
    expected = "success" if counts["failed"] / 10_000 <= 0.01 else "failed"
    assert result.task("send") == expected


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with PostgresServer() as server:
        yield server.url


def test_mapped_campaign_on_a_shared_postgres_ledger(
    connections: SandboxServer, postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_SMS_CHUNK_BASE", tmp_path.as_uri())
    monkeypatch.setenv("SMS_EXAMPLE_LEDGER_CONN_ID", "sms_ledger")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMS_LEDGER",
        json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": postgres, "hash_key": "k" * 32}}),
    )
    result = run_dag("example_sms_mapped_campaign")
    assert result.state == "success", result.tasks
    summaries = [result.xcom("send_chunk", map_index=i) for i in range(3)]
    assert sum(s["accepted"] for s in summaries) == 320
    sent = [d["number"] for d in deliveries(connections, "juncdt")]
    assert len(sent) == len(set(sent)) == 320


CONCURRENT_SENDER = """
import json, sys
from airflow_provider_sms.dispatch.sql_ledger import SqlLedger
from airflow_provider_sms.hooks.juncdt import JuncdtHook
start, owner, url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
audience = [f"131{i:08d}" for i in range(start, start + 3000)]
ledger = SqlLedger(url, "shared-campaign", owner, key=b"k" * 32, lease=4, heartbeat=1)
summary = JuncdtHook().send_bulk(audience, "TPL_CODE", {"code": "1"}, ledger=ledger)
print(json.dumps(summary.as_dict()))
"""


def test_two_workers_overlapping_audiences_one_postgres_ledger(
    connections: SandboxServer, postgres: str
) -> None:
    """Two processes at once (two workers' task instances), 3,000 numbers each, 2,000 shared."""
    control(connections, "POST", "/_sandbox/faults", {"latency_ms": 5})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_SENDER, str(start), f"worker-{start}", postgres],
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (0, 1000)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sum(s["accepted"] for s in summaries) == 4000
    # A shared number the other worker had sent is skipped; one it was still sending is held.
    assert sum(s["skipped"] + s["held"] for s in summaries) == 2000
    sent = [d["number"] for d in deliveries(connections, "juncdt")]
    assert len(sent) == len(set(sent)) == 4000


def test_account_frozen_mid_campaign(connections: SandboxServer, tmp_path: Path) -> None:
    """A fatal answer mid-campaign: no request starts after it is read; the report says who got it."""
    # 50 requests of 100 numbers, 16 at a time, in about four rounds of 300 ms: the freeze, after the
    # first round, lands mid-campaign even when the test's thread is slow on a busy machine.
    control(connections, "POST", "/_sandbox/faults", {"latency_ms": 300})

    def freeze() -> None:
        while delivered(connections) < 1000:
            time.sleep(0.01)
        control(connections, "POST", "/_sandbox/accounts", {"ihuyi": {"frozen": True}})

    threading.Thread(target=freeze, daemon=True).start()
    report = tmp_path / "report.jsonl"
    result = run_dag(
        "sms_test_mms", run_conf={"mobiles": [f"132{i:08d}" for i in range(5000)], "report_uri": str(report)}
    )
    assert result.task("send") == "failed"
    summary = result.xcom("send", key="summary")
    assert "4050" in summary["stopped"]
    log: list[dict[str, Any]] = control(connections, "GET", "/_sandbox/requests")["requests"]
    first_fatal = next(i for i, r in enumerate(log) if r["code"] == "4050")
    # In flight when the fatal reply was read: at most concurrency - 1 (16 - 1) more requests.
    assert len(log) - first_fatal - 1 <= 15
    lines = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 5000
    accepted = {line["row"] for line in lines if line["outcome"] == "accepted"}
    assert len(accepted) == summary["accepted"] == len(deliveries(connections, "ihuyi"))
    assert {line["outcome"] for line in lines} <= {"accepted", "failed", "not_sent"}

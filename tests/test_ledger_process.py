"""What only the child-process ledger can do wrong: its process dies, is signalled, outlives its parent,
or cannot start. (Its promise itself is tested with SqlLedger's, in test_sql_ledger.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_sms.dispatch.engine import Campaign, CampaignOptions
from airflow_provider_sms.dispatch.ledger import LedgerError
from airflow_provider_sms.dispatch.ledger_process import LedgerProcessUnavailable, ProcessLedger
from airflow_provider_sms.dispatch.outcomes import Outcome, Verdict
from airflow_provider_sms.dispatch.recipients import Cleaner, rows_from_items
from tests.test_sql_ledger import (
    ACCEPTED,
    AUDIENCE,
    OWNER,
    ROOT,
    FakeSender,
    people,
    phones,
    statuses,
)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def gone(pid: int, within: float = 10.0) -> bool:
    """The process has ended within the time given (a zombie whose parent died has ended too)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


async def test_the_database_url_goes_to_the_child_over_a_pipe_not_its_command_line(
    postgres_url: str, url: str
) -> None:
    secret = postgres_url.replace("postgres@", "postgres:s3cret-pw@", 1)  # the test server trusts anyone
    ledger = ProcessLedger(secret, "c", OWNER)
    try:
        cmdline = Path(f"/proc/{ledger._proc.pid}/cmdline").read_bytes()
        assert b"s3cret" not in cmdline and b"postgres" not in cmdline
        assert "s3cret" not in repr(ledger)
        assert await ledger.claim(people(2)) == {}
    finally:
        await ledger.close()
    assert ledger._proc.returncode == 0  # close ends the child


async def test_the_child_does_not_preempt_the_sending_loop(url: str) -> None:
    """SCHED_BATCH: a message the child wakes up for waits for the writer's time slice to end."""
    ledger = ProcessLedger(url, "c", OWNER)
    try:
        assert await ledger.claim(people(2)) == {}  # the child set its policy before it answered
        assert os.sched_getscheduler(ledger._proc.pid) == os.SCHED_BATCH
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the task's own process is left alone
    finally:
        await ledger.close()


async def test_messages_larger_than_one_read_arrive_whole(url: str) -> None:
    """A claim of 20,000 numbers, and the answer holding 20,000 verdicts, each take several reads."""
    from airflow_provider_sms.dispatch.ledger_process import READ_SIZE

    audience = people(20_000)
    assert len(",".join(phones(audience))) > 3 * READ_SIZE
    first, second = ProcessLedger(url, "c", OWNER), ProcessLedger(url, "c", "another task")
    try:
        assert await first.claim(audience) == {}
        held = await second.claim(audience)
        assert set(held) == set(phones(audience))
        assert {verdict.outcome for verdict in held.values()} == {Outcome.SKIPPED}
    finally:
        await first.close()
        await second.close()
    assert set(statuses(url, "c").values()) == {"claimed"}


async def test_a_child_that_dies_fails_its_waiters_and_every_call_after(url: str) -> None:
    ledger = ProcessLedger(url, "c", OWNER)
    await ledger.claim(people(3))
    await ledger.mark_sending(phones(people(1)))
    ledger.record(phones(people(1)), ACCEPTED)
    await ledger.done_count()  # the record is committed
    os.kill(ledger._proc.pid, signal.SIGKILL)
    with pytest.raises(LedgerError, match="ended unexpectedly"):
        await ledger.mark_sending(phones(people(1, 1)))  # no mark, so the engine sends nothing
    ledger.record(phones(people(2, 1)), ACCEPTED)  # the engine goes on recording: counted, not raised
    with pytest.raises(LedgerError, match="ended unexpectedly"):
        await ledger.claim(people(1, 5))
    with pytest.raises(LedgerError, match="2 outcomes not written"):
        await ledger.close()
    assert statuses(url, "c")[people(1)[0].phone] == "accepted"  # committed before it died: kept


async def test_the_child_ignores_sigterm_and_sigint_and_ends_when_closed(url: str) -> None:
    """Airflow signals a task's whole process group when it stops it: the parent still records its
    last outcomes in its cleanup, so the child must outlive the signal and end when closed."""
    ledger = ProcessLedger(url, "c", OWNER)
    try:
        await ledger.claim(people(2))
        await ledger.mark_sending(phones(people(2)))
        os.kill(ledger._proc.pid, signal.SIGTERM)
        os.kill(ledger._proc.pid, signal.SIGINT)
        await asyncio.sleep(0.2)
        ledger.record(phones(people(2)), Verdict(Outcome.FAILED, "500", "try later"))
    finally:
        await ledger.close()
    assert set(statuses(url, "c").values()) == {"failed"}


PARENT = """
import asyncio, os, sys
sys.path.insert(0, sys.argv[2])
from airflow_provider_sms.dispatch.ledger_process import ProcessLedger
from tests.test_sql_ledger import ACCEPTED, OWNER, people, phones

async def main():
    ledger = ProcessLedger(sys.argv[1], "c", OWNER)
    await ledger.claim(people(3))
    await ledger.mark_sending(phones(people(2)))
    print(ledger._proc.pid, flush=True)
    sys.stdin.readline()  # the test holds the database's write lock now
    ledger.record(phones(people(1)), ACCEPTED)
    await asyncio.sleep(0.2)  # written to the child, which waits for the lock to commit it
    os._exit(9)  # killed: no close, no cleanup

asyncio.run(main())
"""


def test_a_parent_that_dies_leaves_what_it_sent_committed_and_no_child_behind(url: str) -> None:
    command = [sys.executable, "-c", PARENT, url, str(ROOT)]
    parent = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert parent.stdin is not None and parent.stdout is not None
    child = int(parent.stdout.readline())
    lock = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the child cannot commit until this ends
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.wait(30) == 9
        assert not gone(child, within=0.5)  # still waiting to commit what the dead parent sent
        lock.execute("COMMIT")
    finally:
        lock.close()
    assert gone(child)  # it committed, read end-of-file, and ended
    a, b, c = phones(people(3))
    assert statuses(url, "c") == {a: "accepted", b: "sending", c: "claimed"}


async def test_a_campaign_whose_ledger_process_dies_stops_and_fails_with_the_reason(
    url: str, tmp_path: Path
) -> None:
    """Every number the gateway got had its ``sending`` mark committed first; the task fails, saying why."""
    log = tmp_path / "delivered.txt"
    ledger = ProcessLedger(url, "c", OWNER)
    sender = FakeSender(str(log))
    send = sender.send

    async def send_then_kill(batch: list) -> object:  # type: ignore[type-arg]
        reply = await send(batch)
        if sender.requests >= 5 and ledger._proc.poll() is None:
            os.kill(ledger._proc.pid, signal.SIGKILL)
            ledger._proc.wait()
        return reply

    sender.send = send_then_kill  # type: ignore[method-assign]
    campaign = Campaign(
        sender,  # type: ignore[arg-type]
        lambda: rows_from_items(AUDIENCE),
        lambda: Cleaner(use_params=False),
        CampaignOptions(concurrency=4),
        ledger=ledger,
    )
    with pytest.raises(LedgerError, match="ended unexpectedly"):
        await campaign.run()
    delivered = log.read_text().split()
    assert 5 <= len(delivered) // FakeSender.numbers_per_request < len(AUDIENCE) // 50  # it stopped
    left = statuses(url, "c")
    assert all(left[p] != "claimed" for p in delivered)  # nobody texted without a durable mark
    assert campaign.summary.counts["not_sent"] > 0


def test_where_no_process_can_start_it_says_so_for_the_thread_fallback(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    with pytest.raises(LedgerProcessUnavailable, match="no ledger process could be started"):
        ProcessLedger(url, "c", OWNER)
    monkeypatch.setattr(sys, "executable", "/bin/true")  # starts, and ends before it is ready
    with pytest.raises(LedgerProcessUnavailable, match="ended at start"):
        ProcessLedger(url, "c", OWNER)


def test_a_database_the_child_cannot_open_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(LedgerError, match="could not open sqlite:///"):
        ProcessLedger(f"sqlite:///{tmp_path / 'file' / 'ledger.db'}", "c", OWNER)

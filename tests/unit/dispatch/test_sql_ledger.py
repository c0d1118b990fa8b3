"""The durable ledger against real databases: a SQLite file and the suite's PostgreSQL server.

What is checked is the project's promise: nobody texted twice (concurrent tasks, a task killed with
requests in flight), nobody lost (what a dead task only claimed is sent by the next one, what it may
have sent is reported ``ambiguous``), and no number stored in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import random
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, inspect, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from airflow_provider_sms.dispatch import event_loop, sql_ledger
from airflow_provider_sms.dispatch.engine import Campaign, CampaignOptions
from airflow_provider_sms.dispatch.ledger import LedgerError
from airflow_provider_sms.dispatch.outcomes import Outcome, Verdict
from airflow_provider_sms.dispatch.recipients import Cleaner, rows_from_items
from airflow_provider_sms.dispatch.report import ReportWriter
from airflow_provider_sms.dispatch.retry import RetryPolicy
from airflow_provider_sms.dispatch.senders import MmsSender
from airflow_provider_sms.dispatch.sql_ledger import AMBIGUOUS_MESSAGE, SqlLedger, key_from_text, number_hash
from airflow_provider_sms.gateways.ihuyi import IhuyiClient
from airflow_provider_sms.gateways.transport import HttpSettings
from airflow_provider_sms.sandbox.accounts import IHUYI_ACCOUNT, IHUYI_PASSWORD
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import ROOT, control, delivered, deliveries, raises

HASH_KEY = "a-test-secret-of-more-than-32-characters"  # what a ledger connection's extra holds
KEY = key_from_text(HASH_KEY, "test")
TASK = "dag/send/run-1/-1"
OTHER = "dag/send/run-2/-1"
ACCEPTED = Verdict(Outcome.ACCEPTED, "2", "ok", "G-1", 1)
DAY = 86_400.0
# A mainland mobile number; not a run of digits inside a longer number or a hex id (the owners').
MOBILE = re.compile(r"(?<![0-9a-f])1[0-9]{10}(?![0-9a-f])")


# ----- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'not-yet' / 'ledger.db'}"  # the ledger creates the directory
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def campaign() -> str:
    return f"campaign-{uuid.uuid4().hex[:10]}"  # tests share the PostgreSQL tables, not their rows


# ----- helpers ------------------------------------------------------------------------------------
def people(n: int, start: int = 0) -> list[str]:
    return [f"138{start + i:08d}" for i in range(n)]


def label(url: str) -> str:
    return url.partition(":")[0].partition("+")[0]


class Clock:
    """A settable clock for ``SqlLedger(clock=...)``: rows and leases dated in the past or future."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


@contextlib.asynccontextmanager
async def opened(url: str, campaign: str, task: str = TASK, **options: Any) -> AsyncIterator[SqlLedger]:
    options = {"key": KEY, "lease": 60.0, "heartbeat": 30.0, **options}
    ledger = SqlLedger(url, campaign, task, **options)
    await ledger.open()
    try:
        yield ledger
    finally:
        await ledger.close()


async def abandon(ledger: SqlLedger) -> None:
    """What a killed task leaves: no heartbeat any more, its lease and claims as they were."""
    if ledger._beat is not None:
        ledger._beat.cancel()
    await ledger._shutdown()


@contextlib.contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    """Another process's view of the database: a fresh connection, so only committed rows."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def entries(url: str, campaign: str) -> dict[str, dict[str, Any]]:
    """The campaign's rows by number hash."""
    with engine_for(url) as engine, engine.connect() as conn:
        query = text("SELECT * FROM sms_ledger_entries WHERE campaign = :c")
        return {row.phone: dict(row._mapping) for row in conn.execute(query, {"c": campaign})}


def statuses(url: str, campaign: str, phones: Sequence[str]) -> dict[str, str]:
    """The status of each of ``phones`` that has a row, by number (the test knows the key)."""
    rows = entries(url, campaign)
    return {p: rows[h]["status"] for p in phones if (h := number_hash(KEY, p)) in rows}


def lease_of(url: str, task: str) -> float | None:
    """When the lease of ``task``'s latest try runs out (None: no try registered)."""
    with engine_for(url) as engine, engine.connect() as conn:
        query = text("SELECT max(lease_until) FROM sms_ledger_owners WHERE owner LIKE :t")
        value = conn.execute(query, {"t": f"{task}#%"}).scalar()
        return None if value is None else float(value)


def text_columns(url: str) -> dict[tuple[str, str], list[str]]:
    """Every value of every text column of the ledger's tables (whatever columns they have)."""
    out: dict[tuple[str, str], list[str]] = {}
    with engine_for(url) as engine, engine.connect() as conn:
        inspector = inspect(conn)
        for table in inspector.get_table_names():
            if not table.startswith("sms_ledger"):
                continue
            for column in inspector.get_columns(table):
                if column["type"].python_type is str:
                    values = conn.execute(text(f'SELECT "{column["name"]}" FROM {table}')).scalars()
                    out[(table, column["name"])] = [str(v) for v in values if v is not None]
    return out


def sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")


# ----- claims and verdicts ------------------------------------------------------------------------
async def test_claims_and_what_each_state_means_for_another_task(db_url: str, campaign: str) -> None:
    a, b, c, d, e, f = numbers = people(6)
    async with opened(db_url, campaign) as first:
        assert await first.claim([*numbers, a]) == {}  # a repeated number is claimed once
        assert await first.claim([]) == {}
        rows = entries(db_url, campaign)
        assert {r["status"] for r in rows.values()} == {"claimed"}
        assert set(rows) == {number_hash(KEY, p) for p in numbers}  # stored as keyed hashes
        await first.mark_sending([a, b, c, d, e])
        first.record([a], ACCEPTED)
        first.record([b], Verdict(Outcome.FAILED, "5xx", "HTTP 503", attempts=4))
        first.record([c], Verdict(Outcome.REJECTED, "409", "blacklisted"))
        first.record([d], Verdict(Outcome.AMBIGUOUS, "transport", "timeout"))
        await first.mark_sending([e])  # the outcomes are committed with (before) the next mark
        assert statuses(db_url, campaign, numbers) == {
            a: "accepted", b: "failed", c: "rejected", d: "ambiguous", e: "sending", f: "claimed"
        }  # fmt: skip
        assert entries(db_url, campaign)[number_hash(KEY, a)]["gateway_id"] == "G-1"
        assert await first.done_count(numbers) == 3  # accepted, ambiguous, sending: may have gone out

        since = time.time()
        async with opened(db_url, campaign, OTHER) as other:
            verdicts = await other.claim(numbers, alive_since=since - 60)
            skipped = Verdict(Outcome.SKIPPED, "ledger", f"already accepted in campaign {campaign}")
            held = Verdict(Outcome.HELD, "live", "being sent by another task of this campaign")
            maybe = Verdict(Outcome.AMBIGUOUS, "ledger", "an earlier request may have delivered it")
            # b and c never went out: anyone may send them; e and f: their holder is alive.
            assert verdicts == {a: skipped, d: maybe, e: held, f: held}
            not_renewed = await other.claim([e, f], alive_since=time.time() + 1)
            assert {v.code for v in not_renewed.values()} == {"held"}  # no heartbeat since: not "live"
        async with opened(db_url, campaign + "-b", OTHER) as elsewhere:
            assert await elsewhere.claim(numbers) == {}  # the key is the campaign, not the number

    async with opened(db_url, campaign, TASK) as retry:  # a later try of the same task instance
        earlier = Verdict(Outcome.ACCEPTED_EARLIER, "ledger", "accepted by an earlier try of this task")
        stopped = Verdict(Outcome.AMBIGUOUS, "ledger", AMBIGUOUS_MESSAGE)
        # a: not "skipped", this task instance sent it; e: its try ended while sending it. b, c (taken
        # over by OTHER, which closed without outcomes) and f are free: nobody is sending them.
        assert await retry.claim(numbers) == {a: earlier, d: maybe, e: stopped}
    async with opened(db_url, campaign, TASK, resend_ambiguous=True) as resend:
        assert await resend.claim(numbers) == {a: earlier}  # the user asked to resend what may have gone


async def test_a_dead_task_s_claims_are_taken_over_once_its_lease_ran_out(db_url: str, campaign: str) -> None:
    numbers = people(4)
    sent, unsent = numbers[:2], numbers[2:]
    dead = SqlLedger(db_url, campaign, TASK, key=KEY, lease=60, heartbeat=30)
    await dead.open()
    await dead.claim(numbers)
    await dead.mark_sending(sent)  # requests started... and the task was killed before the replies
    await abandon(dead)

    async with opened(db_url, campaign, OTHER) as early:  # within the lease: not ours to send
        assert {v.outcome for v in (await early.claim(numbers)).values()} == {Outcome.HELD}

    later = Clock(offset=61)  # the lease ran out: the claims belong to nobody
    async with opened(db_url, campaign, OTHER, clock=later) as next_task:
        ambiguous = Verdict(Outcome.AMBIGUOUS, "ledger", AMBIGUOUS_MESSAGE)
        assert await next_task.claim(numbers) == dict.fromkeys(sent, ambiguous)  # the rest: ours now
        assert statuses(db_url, campaign, numbers) == dict.fromkeys(sent, "ambiguous") | dict.fromkeys(
            unsent, "claimed"
        )
        await next_task.mark_sending(unsent)
        next_task.record(unsent, ACCEPTED)
    async with opened(db_url, campaign, "a/third/task/-1", resend_ambiguous=True) as resend:
        assert set(await resend.claim(numbers)) == set(unsent)  # the ambiguous ones, resent on request


async def test_a_task_whose_claims_were_taken_over_cannot_send_them(db_url: str, campaign: str) -> None:
    """A task that lost its lease (stalled longer than it) finds out at its next mark: nothing leaves."""
    stalled = SqlLedger(db_url, campaign, TASK, key=KEY, lease=60, heartbeat=30)
    await stalled.open()
    await stalled.claim(people(3))
    async with opened(db_url, campaign, OTHER, clock=Clock(offset=61)) as other:
        assert await other.claim(people(3)) == {}
    with raises(LedgerError, match="3 of 3 numbers to send are no longer this task's"):
        await stalled.mark_sending(people(3))
    with raises(LedgerError, match="could not be written"):
        await stalled.close()
    assert {r["owner"].partition("#")[0] for r in entries(db_url, campaign).values()} == {OTHER}


async def test_a_task_that_closes_frees_what_it_left_unfinished_at_once(db_url: str, campaign: str) -> None:
    task = f"{campaign}/send/-1"
    async with opened(db_url, campaign, task) as first:
        await first.claim(people(3))  # e.g. stopped before sending them: no outcome recorded
        assert lease_of(db_url, task) is not None
    assert lease_of(db_url, task) is None  # its lease ended with it
    async with opened(db_url, campaign, OTHER) as other:
        assert await other.claim(people(3)) == {}  # no waiting for a lease


async def test_only_final_outcomes_are_recorded(tmp_path: Path) -> None:
    async with opened(f"sqlite:///{tmp_path}/l.db", "c") as ledger:
        for outcome in (Outcome.SKIPPED, Outcome.HELD, Outcome.ACCEPTED_EARLIER, Outcome.DUPLICATE):
            with raises(ValueError, match="final outcomes"):
                ledger.record(["13800000000"], Verdict(outcome))


# ----- group commit and the database thread -------------------------------------------------------
async def test_concurrent_marks_share_transactions(db_url: str, campaign: str) -> None:
    commits = 0

    def count(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    audience = people(200)
    async with opened(db_url, campaign) as ledger:
        await ledger.claim(audience)
        event.listen(Engine, "commit", count)
        try:
            started = time.perf_counter()
            await asyncio.gather(*(ledger.mark_sending([p]) for p in audience))
            elapsed = time.perf_counter() - started
            marks = commits
            for p in audience[:100]:  # workers that mark again while a commit runs share the next one
                ledger.record([p], ACCEPTED)
            await asyncio.gather(*(ledger.mark_sending([p]) for p in audience[100:]))
        finally:
            event.remove(Engine, "commit", count)
        print(f"\n{label(db_url)}: 200 concurrent marks in {marks} transactions, {elapsed * 1000:.1f} ms")
        assert 1 <= marks <= 5
        assert commits - marks <= 5
        found = statuses(db_url, campaign, audience)
        assert list(found.values()).count("accepted") == 100
        assert list(found.values()).count("sending") == 100


async def test_a_dropped_database_connection_is_replaced(postgres_url: str, campaign: str) -> None:
    """The ledger keeps one connection open for the whole campaign: when the server drops it (a
    restart, a failover, an idle timeout), the next transaction runs on a new one and the campaign goes
    on, instead of stopping with its marks refused."""
    phones = people(4)
    async with opened(postgres_url, campaign) as ledger:
        assert await ledger.claim(phones) == {}
        assert ledger._pool is not None and ledger._conn is not None
        driver = ledger._conn.connection.dbapi_connection
        assert driver is not None
        pid = await asyncio.wrap_future(ledger._pool.submit(driver.get_backend_pid))
        with engine_for(postgres_url) as engine, engine.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        await ledger.mark_sending(phones[:2])
        ledger.record(phones[:2], ACCEPTED)
    assert statuses(postgres_url, campaign, phones) == {
        **dict.fromkeys(phones[:2], "accepted"),
        **dict.fromkeys(phones[2:], "claimed"),
    }


async def test_database_work_never_blocks_the_event_loop(db_url: str, campaign: str) -> None:
    threads: set[str] = set()
    blocker: Any = None
    async with opened(db_url, campaign) as ledger:
        assert ledger._engine is not None
        event.listen(
            ledger._engine, "before_cursor_execute", lambda *_: threads.add(threading.current_thread().name)
        )
        await ledger.claim(people(2))
        try:
            # Another connection holds the lock the mark needs: the mark waits, the event loop does not.
            if db_url.startswith("sqlite"):
                blocker = sqlite3.connect(sqlite_path(db_url), isolation_level=None)
                blocker.execute("BEGIN IMMEDIATE")
            else:
                import psycopg2

                u = make_url(db_url)
                blocker = psycopg2.connect(
                    host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database
                )
                blocker.cursor().execute(
                    "SELECT 1 FROM sms_ledger_entries WHERE campaign = %s FOR UPDATE", (campaign,)
                )
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            tick_task = asyncio.create_task(ticker())
            asyncio.get_running_loop().call_later(0.4, blocker.commit)
            started = time.perf_counter()
            await ledger.mark_sending(people(2))
            waited = time.perf_counter() - started
            tick_task.cancel()
        finally:
            if blocker is not None:
                blocker.close()
        assert waited >= 0.35  # it really waited for the lock (busy_timeout, not "database is locked")
        assert ticks >= 15  # while the loop kept running
        assert threads and all(name.startswith("sms-ledger") for name in threads)


# ----- concurrency: claims ------------------------------------------------------------------------
def _claim_in_thread(
    url: str, campaign: str, task: str, audience: list[str], barrier: Any, out: dict
) -> None:
    async def main() -> None:
        mine: set[str] = set()
        async with opened(url, campaign, task) as ledger:
            barrier.wait()
            for start in range(0, len(audience), 1000):
                chunk = audience[start : start + 1000]
                mine |= set(chunk) - set(await ledger.claim(chunk))
            out[task] = mine
            barrier.wait()  # a task that closes frees its unfinished claims: both stay until both claimed

    asyncio.run(main())


def test_concurrent_claims_give_each_number_to_exactly_one_task(db_url: str, campaign: str) -> None:
    rng = random.Random(7)
    a_audience, b_audience = people(5000), people(5000, start=2500)
    rng.shuffle(a_audience)
    rng.shuffle(b_audience)
    barrier = threading.Barrier(2)
    out: dict[str, set[str]] = {}
    threads = [
        threading.Thread(target=_claim_in_thread, args=(db_url, campaign, task, audience, barrier, out))
        for task, audience in ((TASK, a_audience), (OTHER, b_audience))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not (out[TASK] & out[OTHER])
    assert out[TASK] | out[OTHER] == set(people(7500))
    owners = {h: r["owner"].partition("#")[0] for h, r in entries(db_url, campaign).items()}
    assert {h for h, o in owners.items() if o == TASK} == {number_hash(KEY, p) for p in out[TASK]}


def test_tasks_starting_together_create_the_tables_once(
    request: pytest.FixtureRequest, tmp_path: Path, campaign: str
) -> None:
    """Mapped tasks start at once on an empty database: one creates the tables, none fails."""
    urls = [f"sqlite:///{tmp_path / 'fresh.db'}"]
    server = str(request.getfixturevalue("postgres_url"))
    fresh = f"fresh_{uuid.uuid4().hex[:8]}"
    engine = create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {fresh}"))
    urls.append(make_url(server).set(database=fresh).render_as_string(hide_password=False))
    try:
        for url in urls:
            errors: list[BaseException] = []
            barrier = threading.Barrier(4)

            def start(task: str, url: str = url, barrier: Any = barrier, errors: list = errors) -> None:
                async def main() -> None:
                    barrier.wait()
                    async with opened(url, campaign, task) as ledger:
                        await ledger.claim(people(10))

                try:
                    asyncio.run(main())
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=start, args=(f"t{i}",)) for i in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert errors == [], label(url)
            assert len(entries(url, campaign)) == 10
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {fresh} WITH (FORCE)"))
        engine.dispose()


# ----- privacy ------------------------------------------------------------------------------------
def run_campaign_with_faults(
    gw: SandboxServer, url: str, key: bytes, campaign: str, audience: list[str]
) -> Any:
    """A campaign whose outcomes carry gateway words and transport errors (rejections, resets, 5xx,
    timeouts): every kind of text the ledger keeps."""
    control(gw, "POST", "/_sandbox/accounts", {"ihuyi": {"blacklist": audience[:20]}})
    control(
        gw,
        "POST",
        "/_sandbox/faults",
        {"http_5xx_rate": 0.1, "reset_rate": 0.05, "hang_rate": 0.02, "hang_seconds": 3, "seed": 11},
    )
    client = IhuyiClient(IHUYI_ACCOUNT, IHUYI_PASSWORD, HttpSettings(gw.url, timeout=0.5), default_pid=1)
    sender = MmsSender(client, "1001", pid=1, send_time="", numbers_per_request=1)
    return event_loop.run(
        Campaign(
            sender,
            lambda: rows_from_items(audience),
            lambda: Cleaner(use_params=False),
            CampaignOptions(concurrency=16, retry=RetryPolicy(3, 0.01, 0.05), max_consecutive_ambiguous=0),
            ledger=SqlLedger(url, campaign, TASK, key=key),
        ).run()
    )


def test_the_ledger_keeps_no_number_in_clear_and_its_files_are_private(
    gw: SandboxServer, db_url: str, campaign: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a campaign, no text column of the ledger's tables holds a number (the rows hold keyed
    hashes); the default SQLite ledger, its WAL files and its key file are readable by their owner only,
    whatever the umask."""
    from airflow_provider_sms.hooks.ledger import SmsLedgerHook

    home = tmp_path / "airflow-home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    old_umask = os.umask(0)
    try:
        if db_url.startswith("sqlite"):
            url, key = SmsLedgerHook().url_and_key()  # the default: SQLite and a key file in AIRFLOW_HOME
            assert url == f"sqlite:///{home / 'sms_ledger.db'}"
        else:
            url, key = db_url, KEY
        audience = people(300)
        counts = run_campaign_with_faults(gw, url, key, campaign, audience).counts
        assert counts["rejected"] > 0 and counts["accepted"] > 200
        assert counts["ambiguous"] + counts["failed"] > 0  # transport errors' texts were recorded too

        values = text_columns(url)
        hashes = values[("sms_ledger_entries", "phone")]
        assert {number_hash(key, p) for p in audience} <= set(hashes)
        assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in hashes)  # every row: a hash, never a number
        in_clear = {
            (table, column, value)
            for (table, column), column_values in values.items()
            for value in column_values
            if any(p in value for p in audience) or (column != "phone" and MOBILE.search(value))
        }
        assert in_clear == set()
        assert any(values[("sms_ledger_entries", "message")])  # the gateway's texts were there to scan

        if url.startswith("sqlite"):
            extra = people(3, start=99_000_000)

            async def check_files() -> None:  # while a ledger is open: with its WAL and shared memory
                async with opened(url, campaign, OTHER, key=key) as ledger:
                    await ledger.claim(extra)
                    await ledger.mark_sending(extra)
                    db = sqlite_path(url)
                    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), home / "sms_ledger.key"]
                    modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
                    assert modes == dict.fromkeys(modes, "0o600")
                    raw = db.read_bytes() + Path(f"{db}-wal").read_bytes()
                    assert [p for p in [*audience, *extra] if p.encode() in raw] == []

            asyncio.run(check_files())
    finally:
        os.umask(old_umask)


# ----- retention and the contact history ----------------------------------------------------------
async def fill(
    url: str,
    campaign: str,
    task: str,
    finished: dict[str, Outcome],
    unfinished: dict[str, str],
    *,
    days_ago: float,
) -> None:
    """Rows as a task ``days_ago`` left them: ``finished`` with their outcome, ``unfinished``
    ``claimed`` or ``sending`` (a task killed then, whose claims nobody took over since)."""
    ledger = SqlLedger(url, campaign, task, key=KEY, lease=60, heartbeat=30, clock=Clock(-days_ago * DAY))
    await ledger.open()
    await ledger.claim([*finished, *unfinished])
    await ledger.mark_sending([*finished, *(p for p, s in unfinished.items() if s == "sending")])
    for phone, outcome in finished.items():
        ledger.record([phone], Verdict(outcome, "x", "why"))
    if unfinished:
        await ledger.mark_sending([])  # commits the outcomes
        await abandon(ledger)
    else:
        await ledger.close()


async def test_retention_prunes_old_finished_rows_and_nothing_else(
    db_url: str, campaign: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = f"{campaign}/send/-1"  # its leases are looked up by name in the shared tables
    old = people(8)
    outcomes = [Outcome.ACCEPTED, Outcome.FAILED, Outcome.AMBIGUOUS, Outcome.REJECTED, Outcome.NOT_SENT]
    old_finished = dict(zip(old[:5], outcomes, strict=True))
    old_unfinished = {old[5]: "claimed", old[6]: "sending"}
    await fill(db_url, campaign, task, old_finished, old_unfinished, days_ago=200)
    await fill(db_url, campaign, task, {old[7]: Outcome.ACCEPTED}, {}, days_ago=179)  # not old enough
    recent = people(4, start=100)
    await fill(db_url, campaign, OTHER, dict.fromkeys(recent, Outcome.ACCEPTED), {}, days_ago=1)
    other = campaign + "-other"
    await fill(db_url, other, OTHER, dict.fromkeys(old[:3], Outcome.ACCEPTED), {}, days_ago=1)
    await fill(db_url, other, OTHER, dict.fromkeys(people(12, start=200), Outcome.ACCEPTED), {}, days_ago=365)

    # At close, pruning is bounded (here 2 batches of 4 rows): a large backlog never holds a task up.
    monkeypatch.setattr(sql_ledger, "PRUNE_BATCH", 4)
    monkeypatch.setattr(sql_ledger, "PRUNE_AT_CLOSE", 2)
    assert lease_of(db_url, task) is not None  # the try killed 200 days ago
    before = len(entries(db_url, campaign)) + len(entries(db_url, other))
    async with opened(db_url, campaign + "-closing", "closing/task", retention_days=180):
        pass
    after = len(entries(db_url, campaign)) + len(entries(db_url, other))
    assert before - after == 8
    async with opened(db_url, "maintenance", "maintenance") as ledger:
        assert await ledger.prune(180) >= 17 - 8  # by hand: the rest, however many batches (other
        assert await ledger.prune(180) == 0  # tests' old rows in the shared PostgreSQL go too)

    assert statuses(db_url, campaign, [*old, *recent]) == {
        old[5]: "claimed", old[6]: "sending", old[7]: "accepted", **dict.fromkeys(recent, "accepted")
    }  # fmt: skip
    assert statuses(db_url, other, [*old, *people(12, start=200)]) == dict.fromkeys(old[:3], "accepted")
    assert lease_of(db_url, task) is None  # its lease, long run out, went too
    async with opened(db_url, campaign, OTHER) as later:  # its claims stay and can be taken over
        assert set(await later.claim(old[5:7])) == {old[6]}  # the one it was sending: ambiguous


async def test_accepted_since_counts_across_campaigns(
    db_url: str, campaign: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, q, r, s = people(4, start=300 + random.randrange(10**6) * 10)
    await fill(db_url, campaign + "-a", TASK, {p: Outcome.ACCEPTED, q: Outcome.FAILED}, {}, days_ago=10)
    await fill(db_url, campaign + "-b", TASK, {p: Outcome.ACCEPTED, r: Outcome.ACCEPTED}, {}, days_ago=1)
    await fill(db_url, campaign + "-c", TASK, {q: Outcome.AMBIGUOUS}, {}, days_ago=0)
    await fill(db_url, campaign + "-d", TASK, {}, {s: "sending"}, days_ago=0)
    now = time.time()
    async with opened(db_url, "maintenance", "maintenance") as ledger:
        assert await ledger.accepted_since([p, q, r, s], now - 20 * DAY) == {p: 2, r: 1}
        assert await ledger.accepted_since([p, q, r, s], now - 5 * DAY) == {p: 1, r: 1}
        assert await ledger.accepted_since([p, q, r, s], now + 60) == {}

    # The same through the hook, as a maintenance DAG would ask: the connection's hash_key finds them.
    from airflow_provider_sms.hooks.ledger import SmsLedgerHook

    conn = {"conn_type": "generic", "extra": {"sqlalchemy_url": db_url, "hash_key": HASH_KEY}}
    monkeypatch.setenv("AIRFLOW_CONN_SMS_LEDGER_TEST", json.dumps(conn))
    hook = SmsLedgerHook("sms_ledger_test")
    ask = hook.accepted_since  # runs its own event loop, as in a task: on a thread here
    assert await asyncio.to_thread(ask, [p, q, r, s], now - 5 * DAY) == {p: 1, r: 1}
    wrong = {**conn, "extra": {**conn["extra"], "hash_key": "another-secret-of-32-characters-or-more"}}
    monkeypatch.setenv("AIRFLOW_CONN_SMS_LEDGER_TEST", json.dumps(wrong))
    assert await asyncio.to_thread(ask, [p, q, r, s], now - 5 * DAY) == {}  # without the key: nobody


# ----- a task killed mid-campaign, then the next one -----------------------------------------------
AUDIENCE = [f"135{i:08d}" for i in range(3000)]
CONCURRENCY, PER_REQUEST = 4, 10  # the crash bound: 40 numbers
LEASE, HEARTBEAT = 3.0, 1.0


def run_campaign(
    url: str,
    campaign: str,
    task: str,
    sandbox_url: str,
    audience: list[str],
    report: str,
    lease: float = LEASE,
) -> dict[str, Any]:
    """One task's campaign: ihuyi MMS through the sandbox, the SQL ledger, a report of every number."""
    client = IhuyiClient(IHUYI_ACCOUNT, IHUYI_PASSWORD, HttpSettings(sandbox_url, timeout=5), default_pid=1)
    sender = MmsSender(client, "1001", pid=1, send_time="", numbers_per_request=PER_REQUEST)
    ledger = SqlLedger(url, campaign, task, key=KEY, lease=lease, heartbeat=HEARTBEAT)
    with open(report, "w", encoding="utf-8", newline="") as out:
        summary = event_loop.run(
            Campaign(
                sender,
                lambda: rows_from_items(audience),
                lambda: Cleaner(use_params=False),
                CampaignOptions(concurrency=CONCURRENCY, progress_interval=60),
                ledger=ledger,
                report=ReportWriter(out, "csv", unmasked=True),
            ).run()
        )
    return summary.as_dict()


CHILD = """
import json, sys
from tests.unit.dispatch.test_sql_ledger import run_campaign
args = json.loads(sys.argv[1])
if args.pop("wait_for_go"):
    print("READY", flush=True)
    sys.stdin.readline()
print(json.dumps(run_campaign(**args)), flush=True)
"""


def start_child(wait_for_go: bool = False, **args: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps({**args, "wait_for_go": wait_for_go})],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def outcomes_in(report: Path) -> dict[str, str]:
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    by_number = {r["phone"]: r["outcome"] for r in rows}
    assert len(by_number) == len(rows)  # one row per number
    return by_number


def kill_mid_campaign(
    gw: SandboxServer, url: str, campaign: str, task: str, tmp_path: Path, lease: float
) -> None:
    """Start the campaign in a process and SIGKILL it once about a third of the audience went out."""
    control(gw, "POST", "/_sandbox/faults", {"latency_ms": 40})
    child = start_child(
        url=url, campaign=campaign, task=task, sandbox_url=gw.url, audience=AUDIENCE,
        report=str(tmp_path / "killed.csv"), lease=lease,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while delivered(gw) < 1000:
            assert child.poll() is None, child.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the campaign never got going"
            time.sleep(0.02)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    control(gw, "POST", "/_sandbox/faults", {"latency_ms": 0})


@pytest.mark.parametrize(
    ("retry", "when"),
    [(False, "after its lease"), (True, "after its lease"), (False, "within its lease")],
    ids=["new run", "retry of the task", "new run within the lease"],
)
def test_after_a_kill_9_the_next_task_texts_nobody_twice_and_leaves_nobody_out(
    gw: SandboxServer,
    db_url: str,
    campaign: str,
    tmp_path: Path,
    retry: bool,
    when: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task killed with requests in flight, then the next task of the campaign: a new run (same
    dedupe key) or a retry of the same task instance. The numbers the dead task only claimed are
    sent; those it marked ``sending`` (at most ``concurrency x numbers_per_request``) are reported
    ``ambiguous``; those it got accepted are ``skipped``, or ``accepted_earlier`` for its own retry.
    Within the dead task's lease the next one waits for it to run out, then takes over."""
    dead_task = f"dag/send/{campaign}/-1"  # its lease is looked up by name in the shared tables
    task = dead_task if retry else f"dag/send/{campaign}-rerun/-1"
    lease = LEASE if when == "after its lease" else 4.0
    kill_mid_campaign(gw, db_url, campaign, dead_task, tmp_path, lease)
    killed_at = time.time()
    delivered_before = {d["number"] for d in deliveries(gw, "ihuyi")}
    left = statuses(db_url, campaign, AUDIENCE)
    assert len(left) == len(AUDIENCE)  # it claimed everyone...
    marked = {p for p, s in left.items() if s == "sending"}
    accepted_before = {p for p, s in left.items() if s == "accepted"}
    assert marked and "claimed" in left.values()  # ...and died with requests in flight, others unsent
    assert len(marked) <= CONCURRENCY * PER_REQUEST  # the crash bound
    assert accepted_before <= delivered_before <= accepted_before | marked
    dead_lease = lease_of(db_url, dead_task)
    assert dead_lease is not None and dead_lease > killed_at + lease - HEARTBEAT - 0.5
    if when == "after its lease":
        deadline = time.monotonic() + lease + 10
        while time.time() <= dead_lease:  # its lease runs out in at most ``lease`` seconds
            assert time.monotonic() < deadline
            time.sleep(0.05)

    report = tmp_path / "next.csv"
    caplog.set_level("INFO", logger="airflow_provider_sms.dispatch.engine")
    started = time.time()
    summary = run_campaign(db_url, campaign, task, gw.url, AUDIENCE, str(report), lease=lease)
    print(f"\nthe next task took {time.time() - started:.1f} s")

    sent = [d["number"] for d in deliveries(gw, "ihuyi")]
    assert len(sent) == len(set(sent)), "a number was texted twice"
    outcome = outcomes_in(report)
    assert set(outcome) == set(AUDIENCE)  # everyone has an outcome...
    earlier = "accepted_earlier" if retry else "skipped"
    by_outcome: dict[str, set[str]] = {}
    for phone, value in outcome.items():
        by_outcome.setdefault(value, set()).add(phone)
    assert set(by_outcome) == {"accepted", earlier, "ambiguous"}  # ...none "held" at the end
    assert by_outcome[earlier] == accepted_before
    assert by_outcome["ambiguous"] == marked  # only what was in flight is unknown
    assert by_outcome["accepted"] == set(sent) - delivered_before  # the rest, sent once, by this task
    assert set(sent) | by_outcome["ambiguous"] == set(AUDIENCE)  # nobody left unsent and unreported
    assert summary["total"] == len(AUDIENCE)
    assert summary["accepted"] + summary[earlier] + summary["ambiguous"] == len(AUDIENCE)
    # What went out is what the summaries say went out (the ambiguous ones: may have).
    assert summary[earlier] + summary["accepted"] <= len(sent) <= len(AUDIENCE)
    assert set(statuses(db_url, campaign, AUDIENCE).values()) == {"accepted", "ambiguous"}
    if when == "within its lease":
        # It found everyone held by the dead task, waited, and sent nothing before that task's lease
        # ran out; that none ended "held" shows it took the claims over before its wait's deadline.
        held = len(AUDIENCE) - len(accepted_before)
        assert f"{held} recipient(s) are held by another task of this campaign: waiting" in caplog.text
        resent = [r["at"] for r in control(gw, "GET", "/_sandbox/requests")["requests"] if r["at"] > started]
        assert dead_lease < min(resent)


def test_two_live_tasks_with_overlapping_audiences_text_each_number_once(
    gw: SandboxServer, db_url: str, campaign: str, tmp_path: Path
) -> None:
    """Two task instances of one campaign (one dedupe key) in two processes at once; 1,500 of their
    3,000 numbers each are shared. Each shared number is sent by one, and the other reports it
    ``skipped`` (sent already) or ``held`` (the other, alive, was sending it): never sent twice."""
    control(gw, "POST", "/_sandbox/faults", {"latency_ms": 20})
    audiences = {TASK: AUDIENCE[:3000], OTHER: [*AUDIENCE[1500:], *people(1500, start=50_000)]}
    for audience in audiences.values():
        random.Random(5).shuffle(audience)
    reports = {task: tmp_path / f"{i}.csv" for i, task in enumerate(audiences)}
    children = {
        task: start_child(
            wait_for_go=True,
            url=db_url,
            campaign=campaign,
            task=task,
            sandbox_url=gw.url,
            audience=audience,
            report=str(reports[task]),
        )
        for task, audience in audiences.items()
    }
    try:
        for child in children.values():  # both imported and ready: they start together
            assert child.stdout is not None and child.stdout.readline().strip() == "READY"
        for child in children.values():
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = {task: child.communicate(timeout=120) for task, child in children.items()}
    finally:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
    summaries = {}
    for task, (out, err) in results.items():
        assert children[task].returncode == 0, err[-3000:]
        summaries[task] = json.loads(out.strip().splitlines()[-1])

    sent = [d["number"] for d in deliveries(gw, "ihuyi")]
    everyone = set(audiences[TASK]) | set(audiences[OTHER])
    assert len(sent) == len(set(sent)) == len(everyone) == 4500
    outcomes = {task: outcomes_in(reports[task]) for task in audiences}
    for task, summary in summaries.items():
        assert set(outcomes[task]) == set(audiences[task])
        assert summary["total"] == 3000 == summary["accepted"] + summary["skipped"] + summary["held"]
    assert summaries[TASK]["accepted"] + summaries[OTHER]["accepted"] == 4500
    for phone in set(audiences[TASK]) & set(audiences[OTHER]):
        pair = sorted((outcomes[TASK][phone], outcomes[OTHER][phone]))
        assert pair in (["accepted", "held"], ["accepted", "skipped"]), (phone, pair)
    print(
        f"\n{label(db_url)}: "
        + "; ".join(
            f"{t}: {s['accepted']} accepted, {s['skipped']} skipped, {s['held']} held"
            for t, s in summaries.items()
        )
    )


# ----- small things -------------------------------------------------------------------------------
async def test_repr_has_no_credentials_and_a_closed_ledger_refuses(postgres_url: str, campaign: str) -> None:
    url = postgres_url.replace("postgres@", "postgres:s3cret-pw@", 1)  # the test server trusts anyone
    ledger = SqlLedger(url, campaign, TASK, key=KEY)
    assert "s3cret" not in repr(ledger) and "postgres@" not in repr(ledger)
    assert campaign in repr(ledger)
    await ledger.open()
    await ledger.close()
    await ledger.close()  # idempotent
    with raises(LedgerError, match="not open"):
        await ledger.claim(people(1))


def test_arguments_are_checked_before_anything_opens(tmp_path: Path) -> None:
    with raises(ValueError, match="SQLite and PostgreSQL"):
        SqlLedger("mysql://u:p@localhost/db", "c", TASK, key=KEY)
    with raises(ValueError, match="campaign key and a task"):
        SqlLedger(f"sqlite:///{tmp_path}/l.db", "", TASK, key=KEY)
    with raises(ValueError, match="at most half the lease"):
        SqlLedger(f"sqlite:///{tmp_path}/l.db", "c", TASK, key=KEY, lease=10, heartbeat=6)
    with raises(LedgerError, match="at least 32 characters"):
        key_from_text("short", "test")
    assert not (tmp_path / "l.db").exists()


async def test_a_chunk_is_claimed_in_a_few_statements(db_url: str, campaign: str) -> None:
    """The engine claims 5,000 numbers at a time: in multi-row statements, not a round trip per number
    (which made a claim take seconds on PostgreSQL, longer than sending the chunk)."""
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        rows = len(parameters) if many and isinstance(parameters, list) else 1  # a DBAPI executemany
        statements.extend([statement] * rows)  # runs the statement once per row

    async with opened(db_url, campaign) as ledger:
        assert ledger._engine is not None
        event.listen(ledger._engine, "before_cursor_execute", note)
        timings = []
        for k in range(3):
            chunk = people(5000, start=k * 5000)
            started = time.perf_counter()
            assert await ledger.claim(chunk) == {}
            timings.append(time.perf_counter() - started)
        print(f"\n{label(db_url)}: claim of 5,000 new numbers, best of 3: {min(timings) * 1000:.1f} ms")
    claims = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "SELECT"))]
    assert len(claims) <= 3 * (5 + 1)  # per claim: inserts of up to 1,000 rows, one select

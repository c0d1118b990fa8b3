"""The durable ledger against real databases: a SQLite file and a throwaway PostgreSQL server.

What is checked is the project's promise: nobody texted twice (concurrent claimers, crashes between
"sending" and the reply), nobody lost (failed, not sent or abandoned numbers are claimed again).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.pool import NullPool

from airflow_provider_sms.dispatch.engine import Campaign, CampaignOptions
from airflow_provider_sms.dispatch.journal import SendJournal, boot_id, journal_paths
from airflow_provider_sms.dispatch.ledger import LedgerError
from airflow_provider_sms.dispatch.ledger_process import ProcessLedger
from airflow_provider_sms.dispatch.outcomes import Outcome, Verdict
from airflow_provider_sms.dispatch.recipients import Cleaner, Recipient, rows_from_items
from airflow_provider_sms.dispatch.sql_ledger import (
    AMBIGUOUS_MESSAGE,
    NEVER_SENT_MESSAGE,
    LedgerStore,
    SqlLedger,
    outcome_values,
)
from airflow_provider_sms.gateways.models import GatewayReply
from airflow_provider_sms.protocol.codes import CodeClass

ROOT = Path(__file__).resolve().parent.parent
OWNER = "dag/task/run/-1"
OTHER = "dag/task/run/1"
ACCEPTED = Verdict(Outcome.ACCEPTED, "0", "ok", "G-1", 1)


# ----- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'not-yet' / 'ledger.db'}"  # the ledger creates the directory
    return str(request.getfixturevalue("postgres_url"))


LedgerType = type[SqlLedger] | type[ProcessLedger]
KINDS: dict[str, LedgerType] = {"thread": SqlLedger, "process": ProcessLedger}


@pytest.fixture(params=list(KINDS))
def ledger_type(request: pytest.FixtureRequest) -> LedgerType:
    """Both ledgers keep one promise: the database work on a thread, or in a child process."""
    return KINDS[request.param]


@pytest.fixture
def campaign() -> str:
    return f"campaign-{uuid.uuid4().hex[:10]}"  # tests share the PostgreSQL table, not their rows


# ----- helpers ------------------------------------------------------------------------------------
def people(n: int, start: int = 0) -> list[Recipient]:
    return [Recipient(i, f"138{start + i:08d}") for i in range(n)]


def label(url: str) -> str:
    return url.partition(":")[0]


def phones(recipients: Sequence[Recipient]) -> list[str]:
    return [r.phone for r in recipients]


def table_rows(url: str, campaign: str, table: str = "sms_ledger") -> dict[str, dict[str, Any]]:
    """The table as another process sees it: a fresh connection, so only committed rows."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            columns = "phone, status, owner, code, message, gateway_id"
            query = text(f"SELECT {columns} FROM {table} WHERE campaign = :c")
            result = conn.execute(query, {"c": campaign})
            return {row.phone: dict(row._mapping) for row in result}
    finally:
        engine.dispose()


def statuses(url: str, campaign: str) -> dict[str, str]:
    return {p: row["status"] for p, row in table_rows(url, campaign).items()}


async def claimed(ledger: SqlLedger | ProcessLedger, recipients: Sequence[Recipient]) -> set[str]:
    verdicts = await ledger.claim(recipients)
    return {r.phone for r in recipients} - set(verdicts)


# ----- claiming -----------------------------------------------------------------------------------
async def test_claim_new_numbers(ledger_type: LedgerType, db_url: str, campaign: str) -> None:
    ledger = ledger_type(db_url, campaign, OWNER)
    try:
        audience = people(3)
        assert await ledger.claim([*audience, audience[0]]) == {}  # a repeated number is claimed once
        assert await ledger.claim([]) == {}
        rows = table_rows(db_url, campaign)
        assert {p: (r["status"], r["owner"]) for p, r in rows.items()} == {
            p: ("claimed", OWNER) for p in phones(audience)
        }
        assert await ledger.done_count() == 0
    finally:
        await ledger.close()
    if db_url.startswith("sqlite"):
        assert Path(db_url.removeprefix("sqlite:///")).exists()


async def test_numbers_held_by_another_task_are_skipped(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    first = ledger_type(db_url, campaign, OWNER)
    second = ledger_type(db_url, campaign, OTHER)
    try:
        assert await first.claim(people(5)) == {}
        verdicts = await second.claim(people(5, start=3))  # numbers 3, 4 overlap
        held = Verdict(Outcome.SKIPPED, "ledger", f"held by {OWNER}")
        assert verdicts == dict.fromkeys(phones(people(2, 3)), held)
        await first.mark_sending(phones(people(1)))  # sending, then ambiguous: still held
        first.record(phones(people(1, 1)), Verdict(Outcome.AMBIGUOUS, "transport", "timeout"))
        await first.mark_sending(phones(people(1, 2)))
        verdicts = await second.claim(people(3))
        assert {v.message for v in verdicts.values()} == {f"held by {OWNER}"}
        assert len(verdicts) == 3
    finally:
        await first.close()
        await second.close()


async def test_accepted_is_skipped_on_a_later_run_of_the_same_campaign(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    audience = people(4)
    run1 = ledger_type(db_url, campaign, "dag/task/run-1/-1")
    assert await run1.claim(audience) == {}
    await run1.mark_sending(phones(audience))
    run1.record(phones(audience[:3]), ACCEPTED)
    run1.record(phones(audience[3:]), Verdict(Outcome.FAILED, "500", "try later", attempts=3))
    await run1.close()
    row = table_rows(db_url, campaign)[audience[0].phone]
    assert (row["status"], row["code"], row["message"], row["gateway_id"]) == ("accepted", "0", "ok", "G-1")

    run2 = ledger_type(db_url, campaign, "dag/task/run-2/-1")
    try:
        skipped = Verdict(Outcome.SKIPPED, "ledger", f"already accepted in campaign {campaign}")
        assert await run2.claim(audience) == {p: skipped for p in phones(audience[:3])}
        assert await run2.done_count() == 3
    finally:
        await run2.close()
    other_campaign = ledger_type(db_url, campaign + "-b", "dag/task/run-2/-1")
    try:
        assert await other_campaign.claim(audience) == {}  # the key is the campaign, not the number
    finally:
        await other_campaign.close()


async def test_failed_not_sent_and_rejected_are_claimed_again_by_anyone(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    audience = people(3)
    first = ledger_type(db_url, campaign, OWNER)
    await first.claim(audience)
    await first.mark_sending(phones(audience))
    outcomes = (Outcome.FAILED, Outcome.NOT_SENT, Outcome.REJECTED)
    for recipient, outcome in zip(audience, outcomes, strict=True):
        first.record([recipient.phone], Verdict(outcome, "x", "why"))
    await first.close()
    second = ledger_type(db_url, campaign, OTHER)
    try:
        assert await second.claim(audience) == {}
        assert await second.done_count() == 0
    finally:
        await second.close()
    rows = table_rows(db_url, campaign)
    assert {(r["status"], r["owner"], r["code"], r["message"]) for r in rows.values()} == {
        ("claimed", OTHER, "", "")
    }


async def test_resume_reclaims_own_numbers_that_were_never_sent(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    audience = people(1500)  # a crashed try: claimed, never marked
    try1 = ledger_type(db_url, campaign, OWNER)
    await try1.claim(audience)
    await try1.close()
    try2 = ledger_type(db_url, campaign, OWNER)
    other = ledger_type(db_url, campaign, OTHER)
    try:
        assert await other.claim(audience[:10]) != {}  # not to another task instance
        assert await try2.claim(audience) == {}
    finally:
        await try2.close()
        await other.close()


async def test_crash_after_sending_is_ambiguous_not_resent(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    audience = people(4)
    sent, unsent = phones(audience[:2]), phones(audience[2:])
    try1 = ledger_type(db_url, campaign, OWNER)
    await try1.claim(audience)
    await try1.mark_sending(sent)  # the request started... and the worker died before the reply
    await try1.close()
    assert statuses(db_url, campaign) == dict.fromkeys(sent, "sending") | dict.fromkeys(unsent, "claimed")

    try2 = ledger_type(db_url, campaign, OWNER)
    try:
        ambiguous = Verdict(Outcome.AMBIGUOUS, "ledger", AMBIGUOUS_MESSAGE)
        assert await try2.claim(audience) == dict.fromkeys(sent, ambiguous)  # the other two: resumed
        assert await try2.done_count() == 2  # counted against the balance: they may have gone out
        try2.record(sent[:1], Verdict(Outcome.AMBIGUOUS, "transport", "timeout"))
    finally:
        await try2.close()

    try3 = ledger_type(db_url, campaign, OWNER)
    try:
        assert set((await try3.claim(audience)).values()) == {ambiguous}  # recorded ambiguous: same
    finally:
        await try3.close()
    resend = ledger_type(db_url, campaign, OWNER, resend_ambiguous=True)
    try:
        assert await resend.claim(audience) == {}  # the user asked to resend what may have gone
    finally:
        await resend.close()
    other = ledger_type(db_url, campaign, OTHER, resend_ambiguous=True)
    try:  # resend_ambiguous is about our own tries, never about numbers another task holds
        assert {v.message for v in (await other.claim(audience)).values()} == {f"held by {OWNER}"}
    finally:
        await other.close()


# ----- the send journal ---------------------------------------------------------------------------
needs_boot_id = pytest.mark.skipif(boot_id() is None, reason="no boot id here: no journal is kept")
FAILED = Verdict(Outcome.FAILED, "5xx", "HTTP 503", "", 4)


def dead_try(url: str, campaign: str, folder: str, boot: str) -> list[str]:
    """What a try killed mid-campaign leaves (its six numbers returned): in the database, what its
    ledger had committed; in its send journal, how far each number got, and two outcomes the database
    never received. Written with the store and the journal directly, as the dead try's processes did."""
    a, b, c, d, e, _ = numbers = phones(people(6))  # the sixth: claimed, never marked
    store = LedgerStore(url, campaign, OWNER, token="deadbeef")
    store.create_table()
    store.claim(numbers)
    store.write(dict.fromkeys([a, b, c, d, e], store.mark_values))
    log = SendJournal(folder, campaign, OWNER, "deadbeef", boot)
    log.marked([a, b, c, d, e])
    log.started([a])  # in flight when it died
    log.started([b])
    log.undelivered([b])  # answered "not delivered", waiting to be tried again
    log.started([c])
    log.ended([c], outcome_values(ACCEPTED))  # answered; the outcome did not reach the database
    log.started([e])
    log.ended([e], outcome_values(FAILED))
    log.close(remove=False)  # d: marked ahead of a free connection, never started
    store.dispose()
    return numbers


@needs_boot_id
async def test_a_retry_settles_what_the_dead_try_s_send_journal_says(
    ledger_type: LedgerType, db_url: str, campaign: str, tmp_path: Path
) -> None:
    folder = str(tmp_path / "journal")
    a, b, c, d, e, f = dead_try(db_url, campaign, folder, str(boot_id()))
    try2 = ledger_type(db_url, campaign, OWNER, journal_dir=folder)
    try:
        assert try2.recovered == {"outcomes": 2, "never_sent": 2, "maybe_delivered": 1, "untrusted": 0}
        rows = table_rows(db_url, campaign)
        assert {p: row["status"] for p, row in rows.items()} == {
            a: "sending", b: "not_sent", c: "accepted", d: "not_sent", e: "failed", f: "claimed"
        }  # fmt: skip
        assert rows[c]["gateway_id"] == "G-1"
        assert rows[d]["message"] == NEVER_SENT_MESSAGE
        verdicts = await try2.claim(people(6))
        ambiguous = Verdict(Outcome.AMBIGUOUS, "ledger", AMBIGUOUS_MESSAGE)
        skipped = Verdict(Outcome.SKIPPED, "ledger", f"already accepted in campaign {campaign}")
        assert verdicts == {a: ambiguous, c: skipped}  # b, d, e and f are sent by this try
        assert try2.journaled
        assert len(journal_paths(folder, campaign, OWNER)) == 1  # the dead try's is gone, this try's open
    finally:
        await try2.close()
    assert journal_paths(folder, campaign, OWNER) == []  # a clean end removes it


@needs_boot_id
async def test_a_journal_written_before_the_machine_restarted_settles_nothing(
    ledger_type: LedgerType, db_url: str, campaign: str, tmp_path: Path
) -> None:
    """Its last lines may have been lost with the page cache: every number it marked stays ambiguous."""
    folder = str(tmp_path / "journal")
    a, b, c, d, e, _ = dead_try(db_url, campaign, folder, "another-boot")
    try2 = ledger_type(db_url, campaign, OWNER, journal_dir=folder)
    try:
        assert try2.recovered == {"outcomes": 0, "never_sent": 0, "maybe_delivered": 0, "untrusted": 1}
        verdicts = await try2.claim(people(6))
        assert set(verdicts) == {a, b, c, d, e}
        assert {v.outcome for v in verdicts.values()} == {Outcome.AMBIGUOUS}
    finally:
        await try2.close()
    assert journal_paths(folder, campaign, OWNER) == []


async def test_without_a_journal_folder_a_ledger_keeps_none(
    ledger_type: LedgerType, db_url: str, campaign: str, tmp_path: Path
) -> None:
    ledger = ledger_type(db_url, campaign, OWNER)
    try:
        assert not ledger.journaled and ledger.recovered == {}
        await ledger.claim(people(1))
        await ledger.mark_sending(phones(people(1)))
        ledger.started(phones(people(1)))  # nothing to write to
        assert table_rows(db_url, campaign)[phones(people(1))[0]]["code"] == ""
    finally:
        await ledger.close()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    ledger = ledger_type(db_url, campaign, OWNER, journal_dir=str(blocked))
    try:  # a folder that cannot be made: the ledger works without a journal, and says why
        assert not ledger.journaled
        assert "could not be created" in ledger.journal_problem or boot_id() is None
    finally:
        await ledger.close()


# ----- marks, records, group commit ---------------------------------------------------------------
async def test_mark_sending_is_committed_before_it_returns_with_earlier_records(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    a, b, c = phones(people(3))
    ledger = ledger_type(db_url, campaign, OWNER)
    try:
        await ledger.claim(people(3))
        await ledger.mark_sending([a])
        ledger.record([a], ACCEPTED)  # buffered...
        await ledger.mark_sending([b])  # ...and committed no later than this mark
        rows = table_rows(db_url, campaign)
        assert rows[a]["status"] == "accepted"
        assert rows[a]["gateway_id"] == "G-1"
        assert rows[b]["status"] == "sending"
        assert rows[c]["status"] == "claimed"
        ledger.record([b], Verdict(Outcome.REJECTED, "4085", "m" * 5000))
    finally:
        await ledger.close()  # close writes what is still buffered
    rows = table_rows(db_url, campaign)
    assert rows[b]["status"] == "rejected"
    assert len(rows[b]["message"]) == 500  # bounded


async def test_group_commit_batches_concurrent_marks(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    audience = people(200)
    ledger = ledger_type(db_url, campaign, OWNER)
    try:
        await ledger.claim(audience)
        before = ledger.flushes
        started = time.perf_counter()
        await asyncio.gather(*(ledger.mark_sending([p]) for p in phones(audience)))
        elapsed = time.perf_counter() - started
        flushes = ledger.flushes - before
        print(f"\n{label(db_url)}: 200 concurrent marks in {flushes} transactions, {elapsed * 1000:.1f} ms")
        assert 1 <= flushes <= 5
        assert set(statuses(db_url, campaign).values()) == {"sending"}
        # Workers that mark again while a flush runs share the next transaction (record + mark).
        for p in phones(audience[:100]):
            ledger.record([p], ACCEPTED)
        await asyncio.gather(*(ledger.mark_sending([p]) for p in phones(audience[100:])))
        assert ledger.flushes - before <= 10
        assert list(statuses(db_url, campaign).values()).count("accepted") == 100
    finally:
        await ledger.close()


async def test_database_work_never_runs_on_the_event_loop(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    ledger = ledger_type(db_url, campaign, OWNER)
    threads: set[str] = set()
    where = threading.current_thread
    if isinstance(ledger, SqlLedger):  # a ProcessLedger has no engine in this process at all
        event.listen(ledger._store.engine, "before_cursor_execute", lambda *_: threads.add(where().name))
    blocker: Any = None
    try:
        await ledger.claim(people(2))
        # Another connection holds the lock the mark needs: the mark waits, the event loop does not.
        if db_url.startswith("sqlite"):
            blocker = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
        else:
            import psycopg2

            u = make_url(db_url)
            blocker = psycopg2.connect(
                host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database
            )
            blocker.cursor().execute(
                "SELECT 1 FROM sms_ledger WHERE campaign = %s FOR UPDATE", (campaign,)
            )  # row locks until commit
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        asyncio.get_running_loop().call_later(0.4, blocker.commit)
        started = time.perf_counter()
        await ledger.mark_sending(phones(people(2)))
        waited = time.perf_counter() - started
        tick_task.cancel()
        assert waited >= 0.35  # it really waited for the lock (busy_timeout, not "database is locked")
        assert ticks >= 15  # while the loop kept running
        if isinstance(ledger, SqlLedger):
            assert threads and all(name.startswith("sms-ledger") for name in threads)
    finally:
        if blocker is not None:
            blocker.close()
        await ledger.close()


async def test_mark_for_a_number_we_do_not_hold_fails(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    ledger = ledger_type(db_url, campaign, OWNER)
    other = ledger_type(db_url, campaign, OTHER)
    try:
        await other.claim(people(1))
        with pytest.raises(LedgerError, match="not claimed by"):
            await ledger.mark_sending(phones(people(1)))
        assert statuses(db_url, campaign) == {people(1)[0].phone: "claimed"}
    finally:
        await ledger.close()
        await other.close()


# ----- concurrency --------------------------------------------------------------------------------
def _claim_in_thread(
    kind: LedgerType,
    url: str,
    campaign: str,
    owner: str,
    audience: list[Recipient],
    barrier: Any,
    out: dict[str, Any],
) -> None:
    async def main() -> None:
        ledger = kind(url, campaign, owner)
        mine: set[str] = set()
        try:
            barrier.wait()
            for start in range(0, len(audience), 1000):  # as the engine does: one claim per chunk
                mine |= await claimed(ledger, audience[start : start + 1000])
        finally:
            await ledger.close()
        out[owner] = mine

    asyncio.run(main())


def test_concurrent_claims_give_each_number_to_exactly_one_task(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    rng = random.Random(7)
    a_audience, b_audience = people(5000), people(5000, start=2500)
    rng.shuffle(a_audience)
    rng.shuffle(b_audience)
    barrier = threading.Barrier(2)
    out: dict[str, set[str]] = {}
    threads = [
        threading.Thread(
            target=_claim_in_thread, args=(ledger_type, db_url, campaign, owner, audience, barrier, out)
        )
        for owner, audience in ((OWNER, a_audience), (OTHER, b_audience))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not (out[OWNER] & out[OTHER])
    assert out[OWNER] | out[OTHER] == set(phones(people(7500)))
    rows = table_rows(db_url, campaign)
    assert {p for p, r in rows.items() if r["owner"] == OWNER} == out[OWNER]
    assert {p for p, r in rows.items() if r["owner"] == OTHER} == out[OTHER]


CHILD = """
import asyncio, json, random, sys, time
from airflow_provider_sms.dispatch.recipients import Recipient
from airflow_provider_sms.dispatch.sql_ledger import SqlLedger

url, campaign, owner, start, seed, go = sys.argv[1:7]
audience = [Recipient(i, f"138{int(start) + i:08d}") for i in range(5000)]
random.Random(int(seed)).shuffle(audience)

async def main():
    ledger = SqlLedger(url, campaign, owner)
    time.sleep(max(0.0, float(go) - time.time()))  # both processes start claiming together
    mine = []
    for i in range(0, 5000, 1000):
        chunk = audience[i : i + 1000]
        verdicts = await ledger.claim(chunk)
        mine += [r.phone for r in chunk if r.phone not in verdicts]
    await ledger.close()
    print(json.dumps(mine))

asyncio.run(main())
"""


def test_two_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    SqlLedger(url, "warm", "x")  # create the file and table once; the race is about the claims
    go = time.time() + 2.0
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, "shared", owner, str(start), str(seed), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for owner, start, seed in ((OWNER, 0, 1), (OTHER, 2500, 2))
    ]
    results = []
    for child in children:
        stdout, stderr = child.communicate(timeout=60)
        assert child.returncode == 0, stderr
        results.append(set(json.loads(stdout)))
    assert not (results[0] & results[1])
    assert results[0] | results[1] == set(phones(people(7500)))
    assert len(table_rows(url, "shared")) == 7500


def test_tasks_starting_together_create_the_table_once(
    ledger_type: LedgerType, db_url: str, campaign: str
) -> None:
    table = f"ledger_{uuid.uuid4().hex[:8]}"
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start(owner: str) -> None:
        try:
            barrier.wait()
            ledger = ledger_type(db_url, campaign, owner, table=table)
            asyncio.run(ledger.close())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(f"o{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert table_rows(db_url, campaign, table) == {}


# ----- the engine with the ledger: a worker process killed mid-campaign, then the retry -------------
class FakeSender:
    """Appends every number it texts to ``log`` before replying; request ``die_on`` kills the process
    (os._exit: no finally, no close, buffered outcomes lost, as with SIGKILL or an OOM kill)."""

    gateway = "fake"
    numbers_per_request = 50
    takes_params = False

    def __init__(self, log: str, die_on: int | None = None) -> None:
        self.log = log
        self.die_on = die_on
        self.requests = 0

    def group_key(self, recipient: Recipient) -> None:
        return None

    async def send(self, batch: Sequence[Recipient]) -> GatewayReply:
        self.requests += 1
        with open(self.log, "a", encoding="utf-8") as log:  # the gateway got it...
            log.write("".join(f"{r.phone}\n" for r in batch))
        if self.requests == self.die_on:
            os._exit(9)  # ...and the worker died before the reply
        await asyncio.sleep(0.005)
        return GatewayReply("fake", "send", "0", "ok", CodeClass.SUCCESS, {"id": str(self.requests)})

    def classify(self, reply: GatewayReply, batch: Sequence[Recipient]) -> CodeClass:
        return reply.code_class

    def gateway_id(self, reply: GatewayReply) -> str:
        return reply.ids["id"]

    async def warm_up(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


AUDIENCE = [f"138{i:08d}" for i in range(3000)]


async def send_campaign(
    url: str, campaign: str, log: str, kind: str, die_on: int | None = None, journal: str = ""
) -> Any:
    """Concurrency 8; with a send journal (``journal``, a folder), 8 more batches marked ahead."""
    campaign_run = Campaign(
        FakeSender(log, die_on),  # type: ignore[arg-type]
        lambda: rows_from_items(AUDIENCE),
        lambda: Cleaner(use_params=False),
        CampaignOptions(concurrency=8, mark_ahead=8 if journal else None),
        ledger=KINDS[kind](url, campaign, OWNER, journal_dir=journal or None),
    )
    return await campaign_run.run()


KILLED_CHILD = """
import asyncio, sys
sys.path.insert(0, sys.argv[4])
from tests.test_sql_ledger import send_campaign
asyncio.run(send_campaign(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5], die_on=12, journal=sys.argv[6]))
"""


@pytest.mark.parametrize("journal", [False, True], ids=["no journal", "send journal"])
@pytest.mark.parametrize("kind", list(KINDS))
async def test_engine_retry_after_the_worker_was_killed_texts_nobody_twice(
    kind: str, journal: bool, db_url: str, campaign: str, tmp_path: Path
) -> None:
    """Without a journal, every batch marked may be unknown after the crash (8 workers, none marked
    ahead by default); with one, 8 batches are marked ahead of a free connection and still only the
    requests in flight (8 at most) are unknown: the others are resent or settled from the journal."""
    if journal and boot_id() is None:
        pytest.skip("no boot id here: no journal is kept")
    log = str(tmp_path / "delivered.txt")
    folder = str(tmp_path / "journal") if journal else ""
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, db_url, campaign, log, str(ROOT), kind, folder],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert killed.returncode == 9, killed.stderr
    first = Path(log).read_text().split()
    left = statuses(db_url, campaign)
    assert "sending" in left.values()  # requests were in flight when it died
    assert "claimed" in left.values()  # and numbers were claimed, not yet sent
    if journal:
        assert list(left.values()).count("sending") > 8 * 50  # more marked than in flight...

    summary = await send_campaign(db_url, campaign, log, kind, journal=folder)  # the same task instance
    delivered = Path(log).read_text().split()
    assert len(delivered) == len(set(delivered))  # nobody texted twice...
    counts = summary.counts
    assert counts["accepted"] == len(delivered) - len(first) > 0  # the rest was sent by the retry
    assert counts["skipped"] + counts["ambiguous"] + counts["accepted"] == len(AUDIENCE)  # ...nobody lost
    maybe = {p for p, s in statuses(db_url, campaign).items() if s in ("sending", "ambiguous")}
    assert set(delivered) | maybe == set(AUDIENCE)  # a number not texted is reported as maybe texted
    assert counts["ambiguous"] == len(maybe) >= 50  # at least the request that was cut off
    assert counts["ambiguous"] <= 8 * 50  # ...but only the requests in flight are unknown


# ----- small things -------------------------------------------------------------------------------
async def test_repr_has_no_credentials_and_closed_ledger_refuses(
    ledger_type: LedgerType, postgres_url: str, campaign: str
) -> None:
    url = postgres_url.replace("postgres@", "postgres:s3cret-pw@", 1)  # the test server trusts anyone
    ledger = ledger_type(url, campaign, OWNER)
    assert "s3cret" not in repr(ledger)
    assert "postgres@" not in repr(ledger)
    assert campaign in repr(ledger)
    await ledger.close()
    await ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        await ledger.claim(people(1))
    with pytest.raises(LedgerError, match="closed"):
        ledger.record(["13800000000"], ACCEPTED)


def test_default_sqlite_url_and_arguments(tmp_path: Path) -> None:
    assert SqlLedger.default_sqlite_url(str(tmp_path)) == f"sqlite:///{tmp_path}/sms_ledger.db"
    assert SqlLedger.default_sqlite_url("/opt/airflow") == "sqlite:////opt/airflow/sms_ledger.db"
    for kind in KINDS.values():  # refused before a thread or a process is started
        with pytest.raises(ValueError, match="SQLite and PostgreSQL"):
            kind("mysql://u:p@localhost/db", "c", OWNER)
        with pytest.raises(ValueError, match="campaign"):
            kind(f"sqlite:///{tmp_path}/l.db", "", OWNER)


async def test_only_final_outcomes_are_recorded(ledger_type: LedgerType, tmp_path: Path) -> None:
    ledger = ledger_type(f"sqlite:///{tmp_path}/l.db", "c", OWNER)
    try:
        with pytest.raises(ValueError, match="final outcomes"):
            ledger.record(["13800000000"], Verdict(Outcome.SKIPPED))
    finally:
        await ledger.close()


async def test_claim_of_a_chunk_is_fast(ledger_type: LedgerType, db_url: str, campaign: str) -> None:
    ledger = ledger_type(db_url, campaign, OWNER)
    try:
        timings = []
        for k in range(5):
            chunk = people(1000, start=k * 1000)
            started = time.perf_counter()
            assert await ledger.claim(chunk) == {}
            timings.append(time.perf_counter() - started)
        best = min(timings)
        print(f"\n{label(db_url)}: claim of 1,000 new numbers, best of 5: {best * 1000:.1f} ms")
        assert best < (0.05 if db_url.startswith("sqlite") else 0.1)
    finally:
        await ledger.close()

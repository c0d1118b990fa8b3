"""The durable ledger on SQLite or PostgreSQL: nobody texted twice, nobody lost, across tries and runs.

Two tables. ``sms_ledger_entries``: one row per (number, campaign), moving ``claimed`` -> ``sending``
(committed before the request may start) -> the outcome. ``sms_ledger_owners``: one row per running
task try, with a lease it renews while it works (a heartbeat). A claim whose owner's lease ran out
belongs to nobody: the next task of the campaign sends what was only claimed, and reports what was
marked ``sending`` as ``ambiguous`` (the dead try may have delivered it).

No number is stored: rows hold a keyed hash of it (BLAKE2b with a key kept outside the database), so
the database alone tells neither who was texted nor, for a given number, whether it was.

All database work runs on one thread of the task's process. Marks and outcomes that arrive while a
transaction runs go together into the next one (a group commit), so many requests in flight share a
commit instead of queueing one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Column,
    Float,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    inspect,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from airflow_provider_sms.dispatch.ledger import LedgerError
from airflow_provider_sms.dispatch.outcomes import Outcome, Verdict
from airflow_provider_sms.dispatch.suppression_table import SuppressionTable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")
log = logging.getLogger(__name__)

CLAIMED, SENDING = "claimed", "sending"
# Never delivered: any task of the campaign may claim these again.
REOPENED = (Outcome.FAILED.value, Outcome.NOT_SENT.value, Outcome.REJECTED.value)
FINISHED = (Outcome.ACCEPTED.value, Outcome.AMBIGUOUS.value, *REOPENED)
DONE = (Outcome.ACCEPTED.value, SENDING, Outcome.AMBIGUOUS.value)  # sent, or may have been
TEXT_LIMIT = 300  # gateway messages are kept for people to read; rows must not grow without bound
SQLITE_BUSY_TIMEOUT_S = 30  # another process holding the write lock is waited for, not an error
RETRIES = 3  # deadlock, serialization failure, dropped connection: every transaction can be rerun
PRUNE_BATCH = 10_000  # rows deleted per transaction by the retention
PRUNE_AT_CLOSE = 5  # batches pruned when a campaign ends: bounded, whatever the backlog
KEY_FILE = "sms_ledger.key"

AMBIGUOUS_MESSAGE = "a task that stopped may have delivered it (request started, no reply recorded)"


def number_hash(key: bytes, phone: str) -> str:
    """The keyed hash a number is stored as: without the key, neither reversible nor checkable."""
    return hashlib.blake2b(phone.encode(), key=key, digest_size=16).hexdigest()


def load_key(airflow_home: str) -> bytes:
    """The key of the default SQLite ledger: a file of 32 random bytes (hex) under ``AIRFLOW_HOME``,
    created 0600 on first use and shared by every task on this machine."""
    path = Path(airflow_home) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{KEY_FILE}.{uuid.uuid4().hex}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):  # two tasks at once: the first link wins
            os.link(temporary, path)
        temporary.unlink()
    return key_from_text(path.read_text().strip(), f"key file {path}")


def key_from_text(text: str, where: str) -> bytes:
    if len(text) < 32:
        raise LedgerError(f"{where}: the ledger's hash key must be at least 32 characters")
    return hashlib.blake2b(text.encode(), digest_size=32).digest()


def private_sqlite_file(url: str) -> None:
    """Create a SQLite ledger file readable by its owner only (its WAL files take the same mode)."""
    database = make_url(url).database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    path.chmod(0o600)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's implicit BEGIN is off; _sqlite_begin takes the write lock up front instead: two
    # processes queue (busy_timeout) rather than fail mid-transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
    cursor.execute("PRAGMA cache_size = -16384")  # 16 MiB, not 2: a claim's index pages stay in memory
    cursor.execute("PRAGMA synchronous = FULL")  # a committed 'sending' survives a power cut too
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _transient(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
    locked = isinstance(exc.orig, sqlite3.OperationalError) and "locked" in str(exc.orig)
    return bool(exc.connection_invalidated) or code in ("40P01", "40001") or locked


def display_url(url: str) -> str:
    """The URL without user, password or query: what a repr or an error message may show."""
    parsed = make_url(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.drivername}://{parsed.host or ''}{port}/{parsed.database or ''}"


def _tables(metadata: MetaData) -> tuple[Table, Table]:
    entries = Table(
        "sms_ledger_entries",
        metadata,
        Column("phone", String(32), nullable=False),  # the number's keyed hash
        Column("campaign", String(255), nullable=False),
        Column("status", String(16), nullable=False),
        Column("owner", String(400), nullable=False),
        Column("code", String(64), nullable=False, default=""),
        Column("message", Text, nullable=False, default=""),
        Column("gateway_id", String(64), nullable=False, default=""),
        Column("updated_at", Float, nullable=False),  # seconds since the epoch
        # Number first: a claim finds its rows by number and campaign, the contact history by number
        # across campaigns; PostgreSQL never plans a scan of a campaign from stale statistics. The rows
        # themselves stay in claim order (a rowid table on SQLite): a request's numbers share a few
        # pages, where rows kept in hash order would spread each commit over the whole table.
        PrimaryKeyConstraint("phone", "campaign", name="sms_ledger_entries_pkey"),
        Index("sms_ledger_entries_updated", "updated_at"),  # the retention's
    )
    owners = Table(
        "sms_ledger_owners",
        metadata,
        Column("owner", String(400), primary_key=True),
        Column("lease_until", Float, nullable=False),
        Column("renewed_at", Float, nullable=False),
    )
    return entries, owners


class SqlLedger:
    """The ``Ledger`` on a SQLAlchemy URL (``sqlite:////abs/path.db`` or ``postgresql+psycopg2://...``).

    ``campaign`` is the dedupe key shared by every task that must not text a number twice; ``task``
    names one task instance across its tries (an earlier try's accepted numbers are told apart from
    other tasks'); ``key`` hashes the numbers. ``lease``: seconds a claim outlives the last heartbeat
    (every ``heartbeat`` seconds) of a try that stopped without closing. ``retention_days``: finished
    rows older than that are pruned when a campaign ends (``prune`` does it by hand).
    """

    def __init__(
        self,
        url: str,
        campaign: str,
        task: str,
        *,
        key: bytes,
        resend_ambiguous: bool = False,
        lease: float = 60.0,
        heartbeat: float = 10.0,
        retention_days: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        backend = make_url(url).get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"the SMS ledger supports SQLite and PostgreSQL, not {backend!r}")
        if not campaign or not task:
            raise ValueError("the ledger needs a campaign key and a task")
        if not 0 < heartbeat <= lease / 2:
            raise ValueError("the heartbeat must be positive and at most half the lease")
        self.url, self.campaign, self.task = url, campaign, task
        self.owner = f"{task}#{uuid.uuid4().hex[:12]}"  # this try
        self.key, self.resend_ambiguous, self.clock = key, resend_ambiguous, clock
        self._lease, self.heartbeat, self.retention_days = lease, heartbeat, retention_days
        self.entries, self.owners = _tables(MetaData())
        self.postgres = backend == "postgresql"
        self._build_statements()
        self.suppressions = SuppressionTable(self)  # in the same database, by the same hash
        self._pool: ThreadPoolExecutor | None = None
        self._engine: Engine | None = None
        self._conn: Connection | None = None  # the thread's one connection, kept open
        self._marks: list[tuple[list[str], asyncio.Future[None]]] = []
        self._outcomes: dict[tuple[str, str, str, str], list[str]] = {}
        self._hashes: dict[str, str] = {}  # claimed numbers' hashes, until their outcome: hashed once
        self._writer: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self.error: BaseException | None = None  # the first write that failed
        self.lost = 0  # outcomes that could not be written

    def __repr__(self) -> str:
        return f"SqlLedger({display_url(self.url)!r}, campaign={self.campaign!r})"

    def _build_statements(self) -> None:
        """A list of hashes travels as ONE parameter (a PostgreSQL array, a JSON text on SQLite) that
        the server expands: each statement compiles once, and no number is bound one by one (per-row
        binding was most of the ledger's time: a 5,000-number claim, an outcome per request)."""
        e = self.entries
        given: Any
        if self.postgres:
            from sqlalchemy.dialects import postgresql

            array = bindparam("hashes", type_=postgresql.ARRAY(String))
            given = func.unnest(array).column_valued("phone")
            # among(column): the column is one of the hashes given (the one parameter 'hashes')
            self.among: Callable[[Any], Any] = lambda column: column == any_(array)
            self._dialect_insert: Callable[[Table], Any] = postgresql.insert
        else:
            from sqlalchemy.dialects import sqlite

            given = func.json_each(bindparam("hashes", type_=String)).table_valued("value").c.value
            self.among = lambda column: column.in_(select(given).scalar_subquery())
            self._dialect_insert = sqlite.insert
        self._hashes_given = given
        self._given = self.among(e.c.phone)
        blank, now = literal("", String), bindparam("now", type_=Float)
        self._insert = self.insert_new(
            e,
            campaign=literal(self.campaign, String), status=literal(CLAIMED, String),
            owner=literal(self.owner, String), code=blank, message=blank, gateway_id=blank, updated_at=now,
        )  # fmt: skip
        self._ours = and_(e.c.campaign == self.campaign, e.c.owner == self.owner)
        self._record = (
            update(e)
            .where(self._ours, self._given)
            .values(
                status=bindparam("r_status"),
                code=bindparam("r_code"),
                message=bindparam("r_message"),
                gateway_id=bindparam("r_gateway_id"),
                updated_at=now,
            )
        )
        mine = or_(e.c.status == CLAIMED, e.c.status == SENDING)  # updated_at stays the claim's
        self._mark = update(e).where(self._ours, self._given, mine).values(status=SENDING)

    def insert_new(self, table: Table, **values: Any) -> Any:
        """INSERT into ``table`` a row per hash of the parameter ``hashes`` (its column ``phone``, the
        rest ``values``), leaving the rows already there alone: the rowcount is how many were new."""
        given = self._hashes_given
        # WHERE true: without it SQLite would read ON CONFLICT as the ON of a join.
        source = select(given, *values.values()).where(true())
        if self.postgres:  # concurrent inserts lock rows in one order: no deadlock
            source = source.order_by(given)
        keys = [column.name for column in table.primary_key.columns]
        insert = self._dialect_insert(table).from_select(["phone", *values], source)
        return insert.on_conflict_do_nothing(index_elements=keys)

    def pack(self, hashes: list[str]) -> Any:
        """``hashes`` as the one parameter ``hashes`` of a statement built with ``among``."""
        return hashes if self.postgres else json.dumps(hashes)

    def by_hash(self, phones: Sequence[str]) -> dict[str, str]:
        """``phones`` by their keyed hash, as stored."""
        return {number_hash(self.key, p): p for p in phones}

    @property
    def lease(self) -> float:
        return self._lease

    # ----- the database thread ---------------------------------------------------------------------
    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction on the ledger's thread (rerun on a transient failure)."""
        if self._pool is None or self._conn is None:
            raise LedgerError(f"{self!r} is not open")
        return await asyncio.wrap_future(self._pool.submit(self._transaction, self._conn, work))

    @staticmethod
    def _transaction(conn: Connection, work: Callable[[Connection], T]) -> T:
        for attempt in range(RETRIES):
            try:  # a connection that was lost is replaced at the next begin
                with conn.begin():
                    return work(conn)
            except DBAPIError as exc:
                if attempt + 1 < RETRIES and _transient(exc):
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise
        raise AssertionError("unreachable")

    def _create_engine(self) -> Engine:
        # hide_parameters: an error message would otherwise carry the numbers' hashes into the log.
        options: dict[str, Any] = {"hide_parameters": True}
        if self.postgres:
            # One thread, one connection; READ COMMITTED whatever the server's default: each claim
            # statement sees what was committed before it started.
            options.update(pool_size=1, max_overflow=0, isolation_level="READ COMMITTED")
        else:
            private_sqlite_file(self.url)
            options.update(connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, paramstyle="named")
        engine = create_engine(self.url, **options)
        if not self.postgres:
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
        return engine

    async def open(self) -> None:
        """Create the tables if needed, register this try with its lease, start the heartbeat."""
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sms-ledger")
        try:
            self._engine = await asyncio.wrap_future(self._pool.submit(self._create_engine))
            await asyncio.wrap_future(self._pool.submit(self._create_tables, self._engine))
            self._conn = await asyncio.wrap_future(self._pool.submit(self._engine.connect))
            # A group commit's two statements as driver SQL (named parameters on both databases):
            # SQLAlchemy's work per statement, most of a small transaction's time, is done once here.
            self._record_sql, self._mark_sql = (s.compile(self._engine) for s in (self._record, self._mark))
            now = self.clock()
            insert = self.owners.insert().values(
                owner=self.owner, lease_until=now + self._lease, renewed_at=now
            )
            await self.run(lambda conn: conn.execute(insert))
        except BaseException:
            await self._shutdown()
            raise
        self._beat = asyncio.ensure_future(self._heartbeat())

    def _create_tables(self, engine: Engine) -> None:
        try:
            self.entries.metadata.create_all(engine, checkfirst=True)
        except DBAPIError:  # mapped tasks start together: another one may have just created them
            self.entries.metadata.create_all(engine, checkfirst=True)
        if inspect(engine).has_table("sms_ledger"):
            log.warning(
                "The table sms_ledger of an earlier version of this provider holds phone numbers in "
                "clear; drop it once no campaign needs it (this version keeps keyed hashes only)"
            )

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.run(self._renew)
            except Exception as exc:  # the marks' check still keeps a lost claim from being sent
                log.warning("The ledger could not renew this task's lease: %s", type(exc).__name__)

    def _renew(self, conn: Connection) -> None:
        now = self.clock()
        renew = update(self.owners).where(self.owners.c.owner == self.owner)
        conn.execute(renew.values(lease_until=now + self._lease, renewed_at=now))

    # ----- claims ----------------------------------------------------------------------------------
    async def claim(self, phones: Sequence[str], *, alive_since: float | None = None) -> dict[str, Verdict]:
        """Claim ``phones`` in one transaction; verdicts for the numbers that are not ours to send."""
        by_hash = self.by_hash(phones)
        if not by_hash:
            return {}
        hashes = list(by_hash)  # in the audience's order: requests' numbers are rows stored together
        verdicts = await self.run(lambda conn: self._claim(conn, hashes, alive_since))
        self._hashes.update((p, h) for h, p in by_hash.items() if h not in verdicts)
        return {by_hash[h]: v for h, v in verdicts.items()}

    def _claim(self, conn: Connection, hashes: list[str], alive_since: float | None) -> dict[str, Verdict]:
        e, o, now = self.entries, self.owners, self.clock()
        given = {"hashes": self.pack(hashes), "now": now}
        if conn.execute(self._insert, given).rowcount == len(hashes):
            return {}  # every row is new: all ours
        others = conn.execute(
            select(e.c.phone, e.c.status, e.c.owner, o.c.lease_until, o.c.renewed_at)
            .select_from(e.outerjoin(o, e.c.owner == o.c.owner))
            .where(e.c.campaign == self.campaign, self._given)
            .where(or_(e.c.owner != self.owner, e.c.status != CLAIMED)),
            given,
        ).all()
        verdicts: dict[str, Verdict] = {}
        takes: dict[tuple[str, str, str], list[str]] = {}  # (owner, status, new status) -> numbers
        for phone, status, owner, lease_until, renewed_at in others:
            live = lease_until is not None and lease_until > now
            verdict = self._verdict(status, owner, live, renewed_at, alive_since)
            if verdict is None:
                takes.setdefault((owner, status, CLAIMED), []).append(phone)
                continue
            if verdict.outcome is Outcome.AMBIGUOUS and status == SENDING:
                takes.setdefault((owner, status, Outcome.AMBIGUOUS.value), []).append(phone)
            verdicts[phone] = verdict
        for (owner, status, new), phones in takes.items():
            if self._take(conn, phones, owner, status, new, now) == len(phones) or new != CLAIMED:
                continue
            # Another task took some over a moment before us: those are its now.
            e = self.entries
            ours = select(e.c.phone).where(self._ours, self._given)
            taken = set(phones) - set(conn.execute(ours, {"hashes": self.pack(phones)}).scalars())
            for phone in taken:
                verdicts[phone] = Verdict(Outcome.HELD, "held", "being sent by another task of this campaign")
        return verdicts

    def _verdict(
        self, status: str, owner: str, live: bool, renewed_at: float | None, alive_since: float | None
    ) -> Verdict | None:
        """What a number someone else holds (or held) means for this task; None: take it over."""
        if status == Outcome.ACCEPTED.value:
            if owner.startswith(f"{self.task}#"):
                return Verdict(Outcome.ACCEPTED_EARLIER, "ledger", "accepted by an earlier try of this task")
            return Verdict(Outcome.SKIPPED, "ledger", f"already accepted in campaign {self.campaign}")
        if status in REOPENED:
            return None
        if status in (CLAIMED, SENDING) and live:
            alive = alive_since is not None and renewed_at is not None and renewed_at > alive_since
            return Verdict(
                Outcome.HELD, "live" if alive else "held", "being sent by another task of this campaign"
            )
        if status == CLAIMED or self.resend_ambiguous:  # never sent, or its risk accepted
            return None
        message = AMBIGUOUS_MESSAGE if status == SENDING else "an earlier request may have delivered it"
        return Verdict(Outcome.AMBIGUOUS, "ledger", message)

    def _take(
        self, conn: Connection, phones: list[str], owner: str, status: str, new: str, now: float
    ) -> int:
        """Compare and set rows still as they were read: of two tasks taking the same row over, exactly
        one succeeds. Returns how many rows changed."""
        e = self.entries
        values: dict[str, Any] = {"status": new, "updated_at": now}
        if new == CLAIMED:
            values.update(owner=self.owner, code="", message="", gateway_id="")
        else:
            values.update(code="ledger", message=AMBIGUOUS_MESSAGE)
        where = and_(e.c.campaign == self.campaign, self._given, e.c.owner == owner, e.c.status == status)
        return int(
            conn.execute(update(e).where(where).values(values), {"hashes": self.pack(phones)}).rowcount
        )

    # ----- marks and outcomes (group commit) -------------------------------------------------------
    async def mark_sending(self, phones: Sequence[str]) -> None:
        """Return once ``phones`` are committed as ``sending``, with every outcome recorded before."""
        self._check_usable()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks.append(([self._hashes.get(p) or number_hash(self.key, p) for p in phones], done))
        self._kick()
        await done

    def record(self, phones: Sequence[str], verdict: Verdict) -> None:
        """Buffer the outcome: written with the next group, at once when the ledger is idle."""
        v = verdict
        values = (v.outcome.value, v.code[:64], v.message[:TEXT_LIMIT], v.gateway_id[:64])
        if values[0] not in FINISHED:
            raise ValueError(f"the ledger records final outcomes, not {values[0]!r}")
        hashes = (self._hashes.pop(p, "") or number_hash(self.key, p) for p in phones)
        self._outcomes.setdefault(values, []).extend(hashes)
        self._kick()

    def _check_usable(self) -> None:
        if self.error is not None:
            raise LedgerError(f"{self!r} failed earlier: {type(self.error).__name__}")

    def _kick(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_groups())

    async def _write_groups(self) -> None:
        while self._marks or self._outcomes:
            marks, self._marks = self._marks, []
            outcomes, self._outcomes = self._outcomes, {}
            try:
                await self.run(partial(self._write, marks=marks, outcomes=outcomes))
            except Exception as exc:
                self.error = self.error or exc
                self.lost += sum(len(hashes) for hashes in outcomes.values())
                failure = (
                    exc if isinstance(exc, LedgerError) else LedgerError(f"{self!r}: {type(exc).__name__}")
                )
                for _, done in marks:
                    if not done.done():
                        done.set_exception(failure)
                continue
            for _, done in marks:
                if not done.done():
                    done.set_result(None)

    def _write(
        self,
        conn: Connection,
        *,
        marks: list[tuple[list[str], asyncio.Future[None]]],
        outcomes: dict[tuple[str, str, str, str], list[str]],
    ) -> None:
        now, names = self.clock(), ("r_status", "r_code", "r_message", "r_gateway_id")
        rows = [
            dict(zip(names, values, strict=True), hashes=self.pack(hashes), now=now)
            for values, hashes in outcomes.items()
        ]
        record, mark = self._record_sql, self._mark_sql
        if rows:  # one executemany: the statement's overhead once per group, not once per request
            conn.exec_driver_sql(record.string, [{**record.params, **row} for row in rows])
        marked = [h for hashes, _ in marks for h in hashes]
        if marked:
            count = conn.exec_driver_sql(mark.string, {**mark.params, "hashes": self.pack(marked)}).rowcount
            if count != len(marked):  # our lease ran out and another task took numbers over
                raise LedgerError(
                    f"{len(marked) - count} of {len(marked)} numbers to send are no longer this task's"
                )

    async def done_count(self, phones: Sequence[str]) -> int:
        """Of ``phones``, how many this campaign sent, or may have sent."""
        hashes = [number_hash(self.key, p) for p in phones]
        e = self.entries
        query = select(func.count()).where(e.c.campaign == self.campaign, self._given, e.c.status.in_(DONE))
        given = {"hashes": self.pack(hashes)}
        return int(await self.run(lambda conn: conn.execute(query, given).scalar_one()))

    # ----- history and retention -------------------------------------------------------------------
    async def accepted_since(
        self, phones: Sequence[str], since: float, *, other_campaigns: bool = False
    ) -> dict[str, int]:
        """Messages accepted for each of ``phones`` since ``since`` (epoch seconds), across campaigns
        (``other_campaigns``: but this one, whose own numbers its claim already tells apart)."""
        by_hash = self.by_hash(phones)
        e = self.entries
        query = (
            select(e.c.phone, func.count())
            .where(self._given, e.c.status == Outcome.ACCEPTED.value, e.c.updated_at >= since)
            .group_by(e.c.phone)
        )
        if other_campaigns:
            query = query.where(e.c.campaign != self.campaign)
        given = {"hashes": self.pack(list(by_hash))}
        rows = await self.run(lambda conn: conn.execute(query, given).all())
        return {by_hash[h]: int(n) for h, n in rows}

    async def prune(self, older_than_days: float, *, max_batches: int | None = None) -> int:
        """Delete finished rows (and ended owners) last changed more than ``older_than_days`` ago, in
        transactions of ``PRUNE_BATCH`` rows so no writer waits long; returns how many rows went."""
        cutoff = self.clock() - older_than_days * 86_400
        e, o = self.entries, self.owners
        old = select(e.c.phone, e.c.campaign).where(e.c.updated_at < cutoff, e.c.status.in_(FINISHED))
        batch = delete(e).where(tuple_(e.c.phone, e.c.campaign).in_(old.limit(PRUNE_BATCH).scalar_subquery()))
        deleted, batches = 0, 0
        while max_batches is None or batches < max_batches:
            count = int(await self.run(lambda conn: conn.execute(batch).rowcount))
            deleted, batches = deleted + count, batches + 1
            if count < PRUNE_BATCH:
                break
        await self.run(lambda conn: conn.execute(delete(o).where(o.c.lease_until < cutoff)))
        return deleted

    # ----- the end ---------------------------------------------------------------------------------
    async def close(self) -> None:
        """Write everything buffered, end this try's lease, prune, and release the connection."""
        if self._pool is None:
            return
        try:
            if self._beat is not None:
                self._beat.cancel()
            while self._writer is not None and not self._writer.done():
                await self._writer
            if self.error is None:
                # Claims left unfinished (none, when every number got its outcome) are free at once.
                await self.run(
                    lambda conn: conn.execute(delete(self.owners).where(self.owners.c.owner == self.owner))
                )
                if self.retention_days:
                    await self.prune(self.retention_days, max_batches=PRUNE_AT_CLOSE)
        finally:
            await self._shutdown()
        if self.error is not None:
            raise LedgerError(f"{self.lost} outcomes could not be written to {self!r}") from self.error

    async def _shutdown(self) -> None:
        pool, engine, conn = self._pool, self._engine, self._conn
        self._pool = self._engine = self._conn = None
        if pool is not None:
            if conn is not None:
                await asyncio.wrap_future(pool.submit(conn.close))
            if engine is not None:
                await asyncio.wrap_future(pool.submit(engine.dispose))
            pool.shutdown(wait=False)

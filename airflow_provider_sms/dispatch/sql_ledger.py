"""The durable ledger on SQLite or PostgreSQL: nobody texted twice, nobody lost, across tries and runs.

One row per (campaign, phone), moving ``claimed -> sending -> accepted | rejected | failed | ambiguous |
not_sent``. ``sending`` is committed before a request starts, so a crash mid-request leaves proof that
the number may have been texted: the next try reports it AMBIGUOUS instead of texting it again.

With a send journal (``dispatch.journal``), the rows a try marks carry its token, and the next try
settles them from the journal before it claims (``LedgerStore.recover``).

All database work runs on one dedicated thread (``group_commit.GroupCommitThread``), so the event
loop never blocks on I/O and the connection is never shared between threads. ``mark_sending`` is
group-committed: marks (and buffered outcomes) that arrive while a transaction runs go together into
the next one, so 64+ concurrent workers cost a few commits per request round instead of one each.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler

from airflow_provider_sms.dispatch.group_commit import GroupCommitThread
from airflow_provider_sms.dispatch.journal import (
    JournalError,
    Recovered,
    SendJournal,
    boot_id,
    journal_paths,
    read_journal,
)
from airflow_provider_sms.dispatch.ledger import LedgerError
from airflow_provider_sms.dispatch.outcomes import Outcome, Verdict

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.dialects import postgresql
    from sqlalchemy.engine import Connection, Dialect, Engine
    from sqlalchemy.pool import PoolProxiedConnection
    from sqlalchemy.sql.elements import ClauseElement, ColumnElement

    from airflow_provider_sms.dispatch.recipients import Recipient

T = TypeVar("T")

CLAIMED = "claimed"
SENDING = "sending"
# Never delivered: anyone working on the campaign may claim these again.
REOPENED = (Outcome.FAILED.value, Outcome.NOT_SENT.value, Outcome.REJECTED.value)
# Sent, or may have been: they count against the balance and are never resent by default.
DONE = (Outcome.ACCEPTED.value, SENDING, Outcome.AMBIGUOUS.value)
RECORDABLE = frozenset((Outcome.ACCEPTED.value, Outcome.AMBIGUOUS.value, *REOPENED))
BACKENDS = ("sqlite", "postgresql")
FIELDS = ("phone", "status", "code", "message", "gateway_id")  # what an outcome writes
OUTCOME_BINDS = tuple(f"r_{field}" for field in FIELDS[1:])  # an outcome's values, in _Values order

SQLITE_BUSY_TIMEOUT_S = 30  # another process holding the write lock is waited for, not an error
WAL_SWITCH_TRIES = 100  # 50 ms apart: another opener's switch to WAL takes a moment, not five seconds
RETRIES = 3  # deadlock, serialization failure, dropped connection: every transaction can be rerun
TEXT_LIMIT = 500  # gateway messages are kept for people to read; rows must not grow without bound

AMBIGUOUS_MESSAGE = "a previous try may have delivered it (request started, no reply recorded)"
NEVER_SENT_MESSAGE = "a previous try stopped before sending it (its send journal says so)"
RECOVER_CHUNK = 5000  # numbers looked up per transaction when a journal is settled

_Values = tuple[str, str, str, str]  # status, code, message, gateway_id: what one buffered write sets
NEVER_SENT: _Values = (Outcome.NOT_SENT.value, "stopped", NEVER_SENT_MESSAGE, "")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _transient(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
    return bool(exc.connection_invalidated) or code in ("40P01", "40001")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's implicit BEGIN is off; _sqlite_begin issues BEGIN IMMEDIATE instead, taking the
    # write lock up front: two processes queue (busy_timeout) instead of failing mid-transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
    _set_wal(cursor)  # readers never block the writer
    cursor.execute("PRAGMA synchronous = FULL")  # a committed 'sending' survives a power cut too
    cursor.close()


def _set_wal(cursor: sqlite3.Cursor) -> None:
    """WAL mode is stored in the file, but switching to it skips the busy handler: when mapped tasks
    open a new ledger file together, one switches and the others see "locked" for a moment."""
    for attempt in range(1, WAL_SWITCH_TRIES + 1):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_SWITCH_TRIES:
                raise
            time.sleep(0.05)


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    """A statement compiled once to the driver's SQL and argument order. SQLite's group writes run on
    the driver connection: SQLAlchemy's work per transaction (about 300 µs) was most of the ledger's
    CPU when groups are small, and the ledger shares two cores with the event loop that sends."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]  # the values bound at build time (campaign, owner)

    @classmethod
    def compile(cls, statement: ClauseElement, dialect: Dialect) -> _DriverStatement:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # a DML statement compiles to SQL
        names = tuple(compiled.positiontup or ())
        binds = {name: compiled.binds[name] for name in names}
        return cls(compiled.string, names, {n: b.effective_value for n, b in binds.items() if not b.required})

    def args(self, given: dict[str, Any]) -> tuple[Any, ...]:
        values = self.fixed | given
        return tuple(values[name] for name in self.names)


@dataclass(frozen=True, slots=True)
class _DriverWrites:
    """What SQLite's group writes need on the driver connection, built at the first write."""

    connection: PoolProxiedConnection  # from the engine's pool: _sqlite_connect's settings applied
    record: _DriverStatement
    mark: _DriverStatement
    stamp: Callable[[Any], Any] | None  # SQLAlchemy's DateTime bind processor for this dialect


def outcome_values(verdict: Verdict) -> _Values:
    """What recording ``verdict`` writes to a row; only final outcomes are recorded."""
    status = verdict.outcome.value
    if status not in RECORDABLE:
        raise ValueError(f"the ledger records final outcomes, not {status!r}")
    v = verdict
    return (status, v.code[:TEXT_LIMIT], v.message[:TEXT_LIMIT], v.gateway_id[:TEXT_LIMIT])


def check_arguments(url: str, campaign: str, owner: str) -> None:
    """What any ledger front end refuses before it starts: an unsupported database, no campaign key."""
    backend = make_url(url).get_backend_name()
    if backend not in BACKENDS:
        raise ValueError(f"the SMS ledger supports SQLite and PostgreSQL, not {backend!r}")
    if backend == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise LedgerError(f"the SMS ledger needs SQLite 3.35+, found {sqlite3.sqlite_version}")
    if not campaign or not owner:
        raise ValueError("the ledger needs a campaign key and an owner")


def display_url(url: str) -> str:
    """The URL without user, password or query: what a repr or an error message may show."""
    parsed = make_url(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.drivername}://{parsed.host or ''}{port}/{parsed.database or ''}"


class LedgerFrontEnd:
    """What a ledger front end checks first and shows of itself: its campaign, its owner, and the URL
    without user, password or query (for its repr and its error messages); and this try's send journal.

    With ``journal_dir`` (on Linux, where the machine's boot can be told), the rows this try marks carry
    its ``token``, and its requests' starts and answers go to a ``SendJournal`` there. Where the journal
    cannot be created, the ledger works without it (``journal_problem`` says why): then the engine does
    not mark ahead by default, and a crash leaves every marked batch ambiguous, as before journals."""

    def __init__(self, url: str, campaign: str, owner: str, journal_dir: str | None = None) -> None:
        check_arguments(url, campaign, owner)
        self.campaign = campaign
        self.owner = owner
        self._display = display_url(url)
        self._journal_dir = journal_dir
        self._boot = boot_id() if journal_dir else None
        self.token = uuid.uuid4().hex[:16] if self._boot else ""
        self._journal: SendJournal | None = None
        self.journal_problem = ""
        self.recovered: dict[str, int] = {}  # what the journals of earlier tries settled (recover)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._display!r}, campaign={self.campaign!r}, owner={self.owner!r})"

    @property
    def journaled(self) -> bool:
        return self._journal is not None

    def _start_journal(self) -> None:
        """This try's journal, once the database is open and the earlier tries' journals are settled."""
        if not (self._journal_dir and self._boot):
            return
        try:
            self._journal = SendJournal(self._journal_dir, self.campaign, self.owner, self.token, self._boot)
        except JournalError as exc:
            self.journal_problem = str(exc)

    def _journal_mark(self, phones: Sequence[str]) -> int:
        """Journal a mark; ``_journal_flush`` writes it, before it may go to the database. Returns the
        position to pass to ``_journal_committed`` once the mark is committed."""
        return 0 if self._journal is None else self._journal.marked(phones)

    def _journal_flush(self) -> None:
        if self._journal is not None:
            self._journal.flush()

    def _journal_committed(self, position: int) -> None:
        if self._journal is not None:
            self._journal.committed(position)

    def _journal_outcome(self, phones: Sequence[str], values: _Values) -> None:
        if self._journal is not None:
            self._journal.ended(phones, values)

    def _end_journal(self, *, clean: bool) -> None:
        """Close this try's journal; remove it after a clean end (every outcome committed)."""
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close(remove=clean)

    def started(self, phones: Sequence[str]) -> None:
        """Journal that a request for ``phones`` starts; it may leave once this returns."""
        if self._journal is not None:
            self._journal.started(phones)

    def undelivered(self, phones: Sequence[str]) -> None:
        """Journal that no try for ``phones`` was delivered so far (the batch will be tried again)."""
        if self._journal is not None:
            self._journal.undelivered(phones)


class LedgerStore:
    """The ledger's SQL on one connection, synchronous: whoever owns it calls it from one thread
    (``SqlLedger``'s thread, or the child process of ``ledger_process.ProcessLedger``).

    ``campaign`` is the dedupe key shared by every task that must not text a number twice; ``owner``
    names one task instance across its tries (no try number), so a retry resumes its own claims;
    ``token`` names this try in the rows it marks (its send journal's, when it keeps one).
    """

    def __init__(
        self,
        url: str,
        campaign: str,
        owner: str,
        *,
        resend_ambiguous: bool = False,
        table: str = "sms_ledger",
        token: str = "",
    ) -> None:
        check_arguments(url, campaign, owner)
        self.campaign = campaign
        self.owner = owner
        self.resend_ambiguous = resend_ambiguous
        self.token = token
        self.mark_values: _Values = (SENDING, token, "", "")  # what a mark writes: the try's token as code
        self._postgres = make_url(url).get_backend_name() == "postgresql"
        self._table = Table(
            table,
            MetaData(),
            Column("campaign", Text, nullable=False),
            Column("phone", String(32), nullable=False),
            Column("status", String(16), nullable=False),
            Column("owner", Text, nullable=False),
            Column("code", Text, nullable=False, default=""),
            Column("message", Text, nullable=False, default=""),
            Column("gateway_id", Text, nullable=False, default=""),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            # The key is (campaign, phone), indexed number first: rows are always found by number, so
            # PostgreSQL never plans a scan of a whole campaign from stale statistics (a campaign the
            # planner has not seen yet looks like a few rows while it holds millions).
            PrimaryKeyConstraint("phone", "campaign", name=f"{table}_pkey"),
            sqlite_with_rowid=False,  # SQLite: rows live in the key's B-tree, one write per change, not two
        )
        self._build_statements()
        self.lost = 0  # outcomes whose write failed (reported by the front end's close)
        self.error: BaseException | None = None  # the first failure that lost outcomes
        self.groups = 0  # group writes committed
        self.engine = self._create_engine(url)
        self._driver: _DriverWrites | None = None  # SQLite only, from the first group write

    # ----- setup ----------------------------------------------------------------------------------
    def _create_engine(self, url: str) -> Engine:
        parsed = make_url(url)
        # hide_parameters: an error message would otherwise carry phone numbers into the task log.
        options: dict[str, Any] = {"hide_parameters": True}
        if self._postgres:
            # One thread, one connection. READ COMMITTED whatever the server default: the claim is
            # written for it (each statement sees what was committed before it started).
            options.update(pool_size=1, max_overflow=0, isolation_level="READ COMMITTED")
            if parsed.get_driver_name() in ("psycopg2", "psycopg"):
                defaults = {"application_name": "airflow-provider-sms ledger", "connect_timeout": 10}
                options["connect_args"] = {k: v for k, v in defaults.items() if k not in parsed.query}
        else:
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        engine = create_engine(parsed, **options)
        if not self._postgres:
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
        return engine

    def create_table(self) -> None:
        try:
            self._table.metadata.create_all(self.engine, checkfirst=True)
        except DBAPIError:
            # Mapped task instances start together: another one may have created it a moment ago.
            if not inspect(self.engine).has_table(self._table.name):
                raise

    def _build_statements(self) -> None:
        t = self._table
        names = ["campaign", "phone", "status", "owner", "code", "message", "gateway_id", "updated_at"]
        # A list of numbers travels as ONE parameter (a PostgreSQL array, a JSON text on SQLite) that the
        # server expands: no long IN lists, no SQLite parameter cap, and ~5x cheaper than per-row binds.
        phone: ColumnElement[Any]
        if self._postgres:
            # Imported here: the dialect and its drivers' modules cost a SQLite ledger's child process
            # 40 ms of its start.
            from sqlalchemy.dialects import postgresql

            phone = func.unnest(bindparam("phones", type_=postgresql.ARRAY(String))).column_valued("phone")
            phones = t.c.phone == any_(bindparam("phones", type_=postgresql.ARRAY(String)))
            insert: postgresql.Insert | sqlite.Insert = postgresql.insert(t)
        else:
            phone = func.json_each(bindparam("phones", type_=String)).table_valued("value").c.value
            phones = t.c.phone.in_(select(phone).scalar_subquery())
            insert = sqlite.insert(t)
        blank = literal("", Text)
        now = bindparam("now", type_=DateTime(timezone=True))
        # ORDER BY: concurrent claimers lock rows in the same order and so cannot deadlock.
        # WHERE true: without it SQLite would parse ON CONFLICT as the ON of a join.
        source = select(
            literal(self.campaign, Text), phone, literal(CLAIMED, String), literal(self.owner, Text),
            blank, blank, blank, now,
        ).where(true()).order_by(phone)  # fmt: skip
        insert = insert.from_select(names, source)
        own = (CLAIMED, SENDING, Outcome.AMBIGUOUS.value) if self.resend_ambiguous else (CLAIMED,)
        # One statement claims new numbers and takes back re-claimable ones. On conflict the existing
        # row is locked and the WHERE re-checked against its latest committed version (also under
        # READ COMMITTED), so of two concurrent claimers exactly one gets each number.
        self._claim = insert.on_conflict_do_update(
            index_elements=[t.c.phone, t.c.campaign],
            set_={name: insert.excluded[name] for name in names[2:]},
            where=or_(t.c.status.in_(REOPENED), and_(t.c.owner == self.owner, t.c.status.in_(own))),
        )
        self._phones = phones
        ours = and_(t.c.campaign == self.campaign, t.c.owner == self.owner, phones)
        # After the claim, in the same transaction, a number is ours to send exactly when its row says
        # ``claimed`` by us (our rows are locked until commit). The others are usually none, so asking for
        # them returns no rows, where RETURNING the claimed ones would fetch 5,000 rows one by one,
        # the sqlite3 driver taking the GIL back for each, against an event loop that wants it.
        self._not_ours = select(t.c.phone, t.c.status, t.c.owner).where(
            t.c.campaign == self.campaign, phones, or_(t.c.owner != self.owner, t.c.status != CLAIMED)
        )
        self._mark = update(t).where(ours).values(status=SENDING, code=self.token, updated_at=now)
        # Outcomes differ per request (gateway ids). PostgreSQL: a group's outcomes in ONE statement,
        # as parallel arrays the server unpacks (= ANY as well as the join: an index scan on the key
        # even before the table has statistics). SQLite runs in-process, no round trips: executemany,
        # one row per distinct outcome with its numbers as a JSON list (a 100-number MMS batch shares
        # one outcome: one row, not 100; an UPDATE ... FROM json_each may be planned as a scan).
        if self._postgres:  # postgresql was imported above, on the same condition
            arrays = [bindparam(f"r_{field}", type_=postgresql.ARRAY(Text)) for field in FIELDS]
            rows = func.unnest(*arrays).table_valued(*FIELDS).render_derived()
            given: dict[str, Any] = {field: rows.c[field] for field in FIELDS}
            key = and_(t.c.phone == given["phone"], t.c.phone == any_(arrays[0]))
        else:
            given = {field: bindparam(f"r_{field}", type_=Text) for field in FIELDS[1:]}
            key = phones
        values = {**{field: given[field] for field in FIELDS[1:]}, "updated_at": now}
        self._record = (
            update(t).where(t.c.campaign == self.campaign, t.c.owner == self.owner, key).values(values)
        )
        done = t.c.status.in_(DONE)
        self._count = select(func.count()).select_from(t).where(t.c.campaign == self.campaign, done)

    # ----- database work (one thread at a time) --------------------------------------------------
    def _transaction(self, work: Callable[[Connection], T]) -> T:
        for attempt in range(RETRIES):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if attempt + 1 < RETRIES and _transient(exc):
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise
        raise AssertionError("unreachable")

    def _numbers(self, phones: list[str]) -> Any:
        return phones if self._postgres else json.dumps(phones)

    def claim(self, phones: list[str]) -> dict[str, Verdict]:
        """Claim ``phones`` in one transaction; verdicts for the numbers that are not ours to send."""
        now = _now()

        def work(conn: Connection) -> dict[str, Verdict]:
            numbers = self._numbers(phones)
            claimed = conn.execute(self._claim, {"phones": numbers, "now": now}).rowcount
            if claimed == len(phones):  # each row inserted or taken back by us just now: all ours
                return {}  # (the usual case: skips looking every number up again, a third of a claim)
            verdicts = {
                phone: self._verdict(status, owner)
                for phone, status, owner in conn.execute(self._not_ours, {"phones": numbers})
            }
            if claimed + len(verdicts) != len(phones):  # every number is claimed now, or someone's
                raise LedgerError(f"{len(phones)} numbers, {claimed} claimed, {len(verdicts)} held")
            return verdicts

        return self._transaction(work)

    def _verdict(self, status: str, owner: str) -> Verdict:
        if status == Outcome.ACCEPTED.value:
            return Verdict(Outcome.SKIPPED, "ledger", f"already accepted in campaign {self.campaign}")
        if owner == self.owner and status in (SENDING, Outcome.AMBIGUOUS.value):
            return Verdict(Outcome.AMBIGUOUS, "ledger", AMBIGUOUS_MESSAGE)
        return Verdict(Outcome.SKIPPED, "ledger", f"held by {owner}")

    def write(self, pending: dict[str, _Values]) -> None:
        """One transaction for a group: one UPDATE for all marks, one for all outcomes. A failure is
        raised (for the marks' waiters) and its lost outcomes counted (for the front end's close)."""
        try:
            self._write_group(pending)
        except Exception as exc:
            lost = sum(values[0] != SENDING for values in pending.values())
            if lost:
                self.lost += lost
                self.error = self.error or exc
            raise
        self.groups += 1

    def _write_group(self, pending: dict[str, _Values]) -> None:
        # One pass over the numbers: a group holds thousands, and a batch's numbers share one value.
        shared: dict[_Values, list[str]] = {}
        for phone, values in pending.items():
            shared.setdefault(values, []).append(phone)
        marks = shared.pop(self.mark_values, [])  # what is left in shared are the outcomes
        now = _now()
        params: Any
        if self._postgres:
            # Sorted: rows are locked in key order, so writers and claimers cannot deadlock.
            marks.sort()
            rows = sorted((phone, values) for values, numbers in shared.items() for phone in numbers)
            params = {bind: [values[i] for _, values in rows] for i, bind in enumerate(OUTCOME_BINDS)}
            params.update(r_phone=[phone for phone, _ in rows], now=now)
        else:  # one writer at a time: the order does not matter
            self._write_sqlite(marks, shared, now)
            return

        def work(conn: Connection) -> None:
            if shared:
                conn.execute(self._record, params)
            if marks:
                self._check_marked(marks, conn.execute(self._mark, {"phones": marks, "now": now}).rowcount)

        self._transaction(work)

    def _check_marked(self, marks: list[str], marked: int) -> None:
        if marked != len(marks):  # never let a request start for a number we do not hold
            raise LedgerError(f"{len(marks) - marked} numbers are not claimed by {self.owner}")

    def _write_sqlite(self, marks: list[str], shared: dict[_Values, list[str]], now: datetime) -> None:
        """The group's transaction on the driver connection (see ``_DriverStatement``)."""
        driver = self._driver or self._open_driver()
        stamp = driver.stamp(now) if driver.stamp else now
        cursor = driver.connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            if shared:
                rows = []
                for values, numbers in shared.items():
                    given = dict(zip(OUTCOME_BINDS, values, strict=True))
                    rows.append(driver.record.args({**given, "now": stamp, "phones": json.dumps(numbers)}))
                cursor.executemany(driver.record.sql, rows)
            if marks:
                cursor.execute(driver.mark.sql, driver.mark.args({"now": stamp, "phones": json.dumps(marks)}))
                self._check_marked(marks, cursor.rowcount)
            cursor.execute("COMMIT")
        except BaseException:
            dbapi = driver.connection.dbapi_connection
            if dbapi is not None and dbapi.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()

    def _open_driver(self) -> _DriverWrites:
        dialect = self.engine.dialect
        self._driver = _DriverWrites(
            self.engine.raw_connection(),
            _DriverStatement.compile(self._record, dialect),
            _DriverStatement.compile(self._mark, dialect),
            DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect),
        )
        return self._driver

    def done_count(self, phones: Sequence[str] | None = None) -> int:
        """Numbers of this campaign (of ``phones`` when given) accepted, or possibly delivered
        (sending/ambiguous)."""
        query = self._count if phones is None else self._count.where(self._table.c.phone.in_(list(phones)))
        return int(self._transaction(lambda conn: conn.execute(query).scalar_one()))

    # ----- what earlier tries left ---------------------------------------------------------------
    def recover(self, directory: str) -> dict[str, int]:
        """Settle what earlier tries of this task instance left in their send journals, then remove the
        journals: outcomes the database had not committed are recorded, marked numbers whose request
        never started (or was answered as not delivered) are reopened as not sent, and those whose
        request may have been delivered stay ``sending`` (ambiguous to every later try). A journal that
        cannot be trusted (``read_journal``) settles nothing: its numbers stay ambiguous."""
        counts = dict.fromkeys(("outcomes", "never_sent", "maybe_delivered", "untrusted"), 0)
        for path in journal_paths(directory, self.campaign, self.owner):
            found = read_journal(path, self.campaign, self.owner)
            if found is None:
                counts["untrusted"] += 1
            else:
                candidates = sorted(found.outcomes.keys() | found.states.keys())
                for start in range(0, len(candidates), RECOVER_CHUNK):
                    chunk = candidates[start : start + RECOVER_CHUNK]
                    for key, value in self._settle(found, chunk).items():
                        counts[key] += value
            path.unlink(missing_ok=True)
        return counts

    def _settle(self, found: Recovered, phones: list[str]) -> dict[str, int]:
        """One transaction: the rows among ``phones`` still ``sending`` under the dead try's token."""
        t = self._table
        theirs = and_(
            t.c.campaign == self.campaign,
            t.c.owner == self.owner,
            t.c.status == SENDING,
            t.c.code == found.token,
            self._phones,
        )
        fields: dict[str, Any] = {name: bindparam(f"s_{name}") for name in FIELDS[1:]}
        now_bind = bindparam("now", type_=DateTime(timezone=True))
        settle = update(t).where(theirs).values(**fields, updated_at=now_bind)
        now = _now()

        def work(conn: Connection) -> dict[str, int]:
            rows = conn.execute(select(t.c.phone).where(theirs), {"phones": self._numbers(phones)})
            outcomes: dict[_Values, list[str]] = {}
            maybe = 0
            for (phone,) in rows:
                if phone in found.outcomes:
                    values = found.outcomes[phone]
                elif found.states.get(phone) == "S":
                    maybe += 1  # may have been delivered: stays sending
                    continue
                else:
                    values = NEVER_SENT
                outcomes.setdefault(values, []).append(phone)
            for values, numbers in outcomes.items():
                given = {f"s_{name}": value for name, value in zip(FIELDS[1:], values, strict=True)}
                conn.execute(settle, {**given, "now": now, "phones": self._numbers(sorted(numbers))})
            never = len(outcomes.pop(NEVER_SENT, []))
            recorded = sum(len(numbers) for numbers in outcomes.values())
            return {"outcomes": recorded, "never_sent": never, "maybe_delivered": maybe}

        return self._transaction(work)

    def dispose(self) -> None:
        if self._driver is not None:
            self._driver.connection.close()
            self._driver = None
        self.engine.dispose()


class SqlLedger(LedgerFrontEnd):
    """The ``Ledger`` on a SQLAlchemy URL (``sqlite:////abs/path.db`` or ``postgresql+psycopg2://...``),
    its database work on a thread of this process. See ``LedgerStore`` for the arguments, and
    ``LedgerFrontEnd`` for ``journal_dir``."""

    def __init__(
        self,
        url: str,
        campaign: str,
        owner: str,
        *,
        resend_ambiguous: bool = False,
        table: str = "sms_ledger",
        journal_dir: str | None = None,
    ) -> None:
        super().__init__(url, campaign, owner, journal_dir)
        self._store = LedgerStore(
            url, campaign, owner, resend_ambiguous=resend_ambiguous, table=table, token=self.token
        )
        self._closed = False
        # phone -> what the next group writes to its row (status, code, message, gateway id)
        self._db: GroupCommitThread[str, _Values] = GroupCommitThread("sms-ledger", self._store.write)
        try:
            self._db.submit(self._store.create_table).result()
            if journal_dir:
                self.recovered = self._db.submit(lambda: self._store.recover(journal_dir)).result()
        except BaseException:
            self._db.stop_now(self._store.dispose)
            raise
        self._start_journal()

    @property
    def flushes(self) -> int:
        """Group-commit transactions (marks and outcomes) written so far."""
        return self._store.groups

    @classmethod
    def default_sqlite_url(cls, airflow_home: str) -> str:
        """``sqlite:///<AIRFLOW_HOME>/sms_ledger.db``: durable on one machine with no connection to set up."""
        return f"sqlite:///{os.path.abspath(os.path.join(airflow_home, 'sms_ledger.db'))}"

    # ----- the Ledger protocol (event loop side) --------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError(f"{self!r} is closed")

    async def claim(self, recipients: Sequence[Recipient]) -> dict[str, Verdict]:
        """Claim ``recipients`` in one transaction; verdicts for the numbers that are not ours to send."""
        self._check_open()
        phones = sorted({r.phone for r in recipients})
        if not phones:
            return {}
        return await self._db.call(lambda: self._store.claim(phones))

    async def mark_sending(self, phones: Sequence[str]) -> None:
        """Return once ``phones`` are committed as ``sending``, with every outcome recorded before."""
        self._check_open()
        if phones:
            position = self._journal_mark(phones)
            self._journal_flush()  # the ledger thread may commit the mark at once
            await self._db.commit(dict.fromkeys(phones, self._store.mark_values))
            self._journal_committed(position)

    def record(self, phones: Sequence[str], verdict: Verdict) -> None:
        """Buffer the outcome: the ledger thread commits it with the next group, at once when idle
        (so a crash later cannot hide it), and no later than the next mark or ``close``."""
        self._check_open()
        values = outcome_values(verdict)
        self._journal_outcome(phones, values)
        self._db.buffer(dict.fromkeys(phones, values))

    async def done_count(self, phones: Sequence[str] | None = None) -> int:
        """Numbers of this campaign (of ``phones`` when given) accepted, or possibly delivered."""
        self._check_open()
        await self._db.commit()
        return await self._db.call(lambda: self._store.done_count(phones))

    async def close(self) -> None:
        """Write everything buffered, then release the connection and the thread; idempotent. The send
        journal is removed once every outcome is committed, kept for the next try otherwise."""
        if self._closed:
            return
        self._closed = True
        clean = False
        try:
            await self._db.stop(self._store.dispose)  # the thread writes every buffered group first
            clean = self._store.error is None
        finally:
            self._end_journal(clean=clean)
        if self._store.error is not None:
            lost = self._store.lost
            raise LedgerError(f"{lost} outcomes could not be written to {self!r}") from self._store.error


if TYPE_CHECKING:
    from airflow_provider_sms.dispatch.ledger import Ledger

    def _is_a_ledger(ledger: SqlLedger) -> Ledger:  # mypy checks SqlLedger against the protocol
        return ledger

"""The contact policy of a send from its settings: the suppression list read from a file
(``ObjectStoragePath``) or a SQL query on an Airflow connection, the opt-out check of the template
text, and the quiet hours now. Everything here runs before the campaign opens anything."""

from __future__ import annotations

import csv
from contextlib import closing
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_sms.dispatch.policy import (
    MARKETING,
    AudienceGuard,
    ContactPolicy,
    SuppressionList,
    check_opt_out,
    describe,
    duration_seconds,
)
from airflow_provider_sms.errors import InvalidInputError, SourceUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_sms.dispatch.policy import QuietHours
    from airflow_provider_sms.dispatch.settings import SendSettings

FETCH = 10_000  # rows fetched from a suppression query at a time


class QuietHoursClosed(InvalidInputError):
    """A marketing send outside its window: nothing was sent; ``opens_at`` says when it may be."""

    def __init__(self, window: QuietHours, opens_at: datetime) -> None:
        super().__init__(
            f"marketing is not sent in quiet hours: the window {window} opens at "
            f"{opens_at.isoformat(timespec='seconds')}; nothing was sent"
        )
        self.opens_at = opens_at


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def check_window(settings: SendSettings, now: datetime | None = None) -> datetime | None:
    """Raise :class:`QuietHoursClosed` outside a marketing send's window; else when it closes (None:
    no quiet hours for this send)."""
    window = settings.window
    if window is None:
        return None
    now = now or utc_now()
    if not window.is_open(now):
        raise QuietHoursClosed(window, window.next_open(now))
    return window.closes_at(now)


def check_send_time(settings: SendSettings, send_time: Any) -> bool:
    """An ihuyi ``send_time`` (Beijing time) must fall in a marketing send's window; True when one
    was given (the gateway then delivers at that time: the window is judged there, not now)."""
    from airflow_provider_sms.protocol.sendtime import BEIJING, FORMAT

    if send_time in (None, ""):
        return False
    window = settings.window
    if window is None:
        return True
    if isinstance(send_time, datetime):
        when = send_time if send_time.tzinfo else send_time.replace(tzinfo=BEIJING)
    else:
        try:
            when = datetime.strptime(str(send_time).strip(), FORMAT).replace(tzinfo=BEIJING)
        except ValueError:
            return True  # the send path refuses a malformed send_time with its own message
    if not window.is_open(when):
        raise InvalidInputError(
            f"send_time {when.strftime(FORMAT)} (Beijing) is in the quiet hours of a marketing send "
            f"(allowed: {window}); nothing was sent"
        )
    return True


def contact_policy(
    settings: SendSettings,
    *,
    template_text: str | None = None,
    scheduled: bool = False,
    now: datetime | None = None,
) -> ContactPolicy:
    """The policy the engine applies. Refuses (before anything is sent) a marketing template without
    an opt-out instruction and a marketing send in quiet hours (unless ``scheduled`` by the gateway
    into its window); reads the suppression list."""
    marketing = settings.purpose == MARKETING
    if marketing and template_text:
        check_opt_out(template_text, settings.opt_out_pattern)
    closes, opens = None, None
    if not scheduled:
        try:
            closes = check_window(settings, now)
        except QuietHoursClosed as closed:
            if not settings.dry_run:
                raise
            opens = closed.opens_at  # a dry run says when the send would start
    if marketing and settings.max_per_number is not None and not settings.use_ledger:
        raise InvalidInputError("max_per_number needs the ledger's contact history: set use_ledger=True")
    suppression = load_suppression(settings)
    return ContactPolicy(
        purpose=settings.purpose,
        suppression=suppression,
        suppression_table=settings.use_ledger,
        max_per_number=settings.max_per_number,
        per_seconds=duration_seconds(settings.per),
        per=settings.per,
        guard=AudienceGuard(
            settings.max_recipients, settings.expected_recipients, settings.expected_tolerance
        ),
        stop_at=closes.timestamp() if closes is not None else None,
        details=describe(
            settings.purpose,
            suppression=suppression,
            suppression_table=settings.use_ledger,
            max_per_number=settings.max_per_number,
            per=settings.per,
            quiet_hours=None if scheduled else settings.window,
            opt_out_checked=bool(marketing and template_text),
        )
        | ({"deferred_until": opens.isoformat(timespec="seconds")} if opens else {}),
    )


# ----- suppression sources --------------------------------------------------------------------------
def load_suppression(settings: SendSettings) -> SuppressionList | None:
    """The numbers of ``suppression_uri`` and of ``suppression_sql``, or None when neither is set."""
    if settings.suppression_sql and not settings.suppression_conn_id:
        raise InvalidInputError("suppression_sql needs suppression_conn_id (the connection it runs on)")
    if not settings.suppression_uri and not settings.suppression_sql:
        return None

    def numbers() -> Iterator[object]:
        if settings.suppression_uri:
            yield from numbers_in_file(settings.suppression_uri, settings.encoding)
        if settings.suppression_sql and settings.suppression_conn_id:
            yield from numbers_from_sql(settings.suppression_conn_id, settings.suppression_sql)

    try:
        return SuppressionList(numbers())
    except InvalidInputError:
        raise
    except Exception as exc:  # a list that cannot be read must not mean "nobody is suppressed"
        problem = f"the suppression list could not be read: {type(exc).__name__}: {exc}; nothing was sent"
        if _fixed_only_by_hand(exc):
            raise InvalidInputError(problem) from None
        raise SourceUnavailableError(f"{problem} (a retry may get past it)") from None


def _fixed_only_by_hand(exc: Exception) -> bool:
    """A missing or undecodable file, or a query the database refused: retrying cannot help. Anything
    else (a refused or dropped connection, a timeout, a locked database) may pass."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, UnicodeError, csv.Error)):
        return True
    # DB-API errors, whichever driver raised them (directly or wrapped by SQLAlchemy): a query the
    # server refused is a ProgrammingError, or on SQLite an OperationalError naming the fault.
    kinds = {type(exc).__name__, type(getattr(exc, "orig", None)).__name__}
    if kinds & {"ProgrammingError", "DataError", "IntegrityError", "NotSupportedError"}:
        return True
    return "OperationalError" in kinds and any(
        words in str(exc) for words in ("no such table", "no such column", "syntax error")
    )


def numbers_in_file(uri: str, encoding: str = "utf-8") -> Iterator[object]:
    """One number a line, or a CSV file's ``phone``/``mobile`` column (else its first column)."""
    from airflow_provider_sms.dispatch.recipients import phone_column
    from airflow_provider_sms.hooks.campaign import open_path

    path = open_path(uri)
    with path.open("r", encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="") as stream:
        if uri.lower().endswith(".csv"):
            reader = csv.reader(stream)
            header = next(reader, [])
            column = phone_column(header)
            at = header.index(column) if column else 0
            if column is None and header:
                yield header[0]
            for row in reader:
                if len(row) > at:
                    yield row[at]
        else:
            for line in stream:
                if line.strip():
                    yield line.strip()


def numbers_from_sql(conn_id: str, sql: str) -> Iterator[object]:
    """The first column of ``sql`` on an Airflow connection: through its DB-API hook (any SQL
    provider), else, for a ``sqlite``/``postgres`` connection without its provider, SQLAlchemy."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    hook: Any
    try:
        hook = conn.get_hook()  # type: ignore[no-untyped-call]
    except Exception:
        hook = None
    connect: Callable[[], Any] | None = getattr(hook, "get_conn", None)
    if connect is not None and hasattr(hook, "get_records"):
        with closing(connect()) as db:
            cursor = db.cursor()
            cursor.execute(sql)
            while rows := cursor.fetchmany(FETCH):
                for row in rows:
                    yield row[0]
        return
    from sqlalchemy import create_engine, text

    from airflow_provider_sms.ledger_url import ledger_url_from_connection

    url = ledger_url_from_connection(conn_id, conn, role="suppression list")
    engine = create_engine(url, hide_parameters=True)
    try:
        with engine.connect() as db:
            result = db.execution_options(stream_results=True).execute(text(sql))
            while rows := result.fetchmany(FETCH):
                for row in rows:
                    yield row[0]
    finally:
        engine.dispose()

"""Does the ledger slow down as its history grows? The ledger's cost per number, empty vs 10,000,000 rows.

Builds a ledger database that already holds ``--history`` rows (default 10,000,000): ``--numbers``
distinct numbers (default 1,000,000, hashed with the ledger's key, as ``SqlLedger`` stores them), each
in ``history / numbers`` earlier campaigns, finished (97% accepted), last changed within the last 170
days (inside the default 180-day retention, so the prune at close finds nothing to delete). The rows go
in with one ``INSERT ... SELECT`` from a cross join, in key order, the ``updated_at`` index built
after. Then runs, in alternating rounds, the ledger work of one campaign against that database and
against an empty one (a new file each round): ``--campaign`` numbers (default 20,000, all of them in
the history, as a repeat audience is) claimed in chunks of 5,000 as the engine does, then marked
``sending`` and recorded ``accepted`` by 64 workers, one number per request (``--per-request``), with
no gateway in between (the ledger alone is measured, and it is the bottleneck here), then closed (its
lease ended, the retention's prune). Prints wall and CPU time per number, medians and ranges.

    python benchmarks/ledger_history.py                       # SQLite, 3 rounds (build 3 min, 2.7 GB)
    python benchmarks/ledger_history.py --keep /var/tmp/h.db  # keep the history file, reuse it next time
    python benchmarks/ledger_history.py --postgres            # the same on a private PostgreSQL server
                                                              # (tests/pgserver.py; fsync off)
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import io
import os
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from airflow_provider_sms.dispatch.outcomes import Outcome, Verdict
from airflow_provider_sms.dispatch.sql_ledger import SqlLedger, number_hash

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 5000  # as the engine claims (dispatch/engine.py CHUNK)
WORKERS = 64  # the operators' bench concurrency
DAY = 86_400.0
ACCEPTED = Verdict(Outcome.ACCEPTED, "0", "ok", "gw-1", 1)


def phone(i: int) -> str:
    return f"13{i:09d}"


def campaign_name(i: int) -> str:
    """Campaign keys shaped like the operators' default (dag, task, run, map index)."""
    return f"weekly_promo/send_sms/scheduled__2026-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:00+00:00/{i}"


def history_select(now: float, owner_sql: str, random_sql: str) -> str:
    """The SELECT that makes the history rows from ``hist_numbers`` x ``hist_campaigns``."""
    r, span = random_sql, int(170 * DAY)
    return (
        f"SELECT n.phone, c.name, CASE WHEN {r} % 100 < 97 THEN 'accepted' WHEN {r} % 2 = 0 THEN 'failed' "
        f"ELSE 'rejected' END, {owner_sql}, '0', 'ok', '', {now} - {r} % {span} "
        "FROM hist_numbers n CROSS JOIN hist_campaigns c ORDER BY n.phone, c.name"
    )


def create_schema(url: str, key: bytes) -> None:
    """The ledger's own tables and indexes, made by ``SqlLedger.open``."""

    async def run() -> None:
        ledger = SqlLedger(url, "schema", "schema", key=key)
        await ledger.open()
        await ledger.close()

    asyncio.run(run())


def build_sqlite(path: Path, key: bytes, numbers: int, campaigns: int) -> None:
    create_schema(f"sqlite:///{path}", key)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = DELETE")  # no WAL for the bulk load; the ledger sets WAL again
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -1000000")  # 1 GB
    (index_sql,) = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'sms_ledger_entries_updated'"
    ).fetchone()
    db.execute("BEGIN")
    db.execute("DROP INDEX sms_ledger_entries_updated")
    db.execute("CREATE TEMP TABLE hist_numbers (phone TEXT PRIMARY KEY) WITHOUT ROWID")
    db.executemany(
        "INSERT INTO hist_numbers VALUES (?)", ((number_hash(key, phone(i)),) for i in range(numbers))
    )
    db.execute("CREATE TEMP TABLE hist_campaigns (name TEXT PRIMARY KEY) WITHOUT ROWID")
    db.executemany("INSERT INTO hist_campaigns VALUES (?)", ((campaign_name(i),) for i in range(campaigns)))
    owner = "'send_sms#' || substr(c.name, -6)"
    db.execute("INSERT INTO sms_ledger_entries " + history_select(time.time(), owner, "abs(random())"))
    db.execute(index_sql)
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()


def build_postgres(url: str, key: bytes, numbers: int, campaigns: int) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    create_schema(url, key)
    u = make_url(url)
    db = psycopg2.connect(host=u.host, port=u.port, user=u.username, dbname=u.database)
    with db, db.cursor() as cur:
        cur.execute("DROP INDEX sms_ledger_entries_updated")
        cur.execute("ALTER TABLE sms_ledger_entries DROP CONSTRAINT sms_ledger_entries_pkey")
        cur.execute("CREATE TEMP TABLE hist_numbers (phone varchar(32))")
        data = "".join(number_hash(key, phone(i)) + "\n" for i in range(numbers))
        cur.copy_expert("COPY hist_numbers FROM STDIN", io.StringIO(data))
        cur.execute("CREATE TEMP TABLE hist_campaigns (name varchar(255))")
        cur.executemany(
            "INSERT INTO hist_campaigns VALUES (%s)", [(campaign_name(i),) for i in range(campaigns)]
        )
        owner = "'send_sms#' || right(c.name, 6)"
        select = history_select(time.time(), owner, "(random() * 1e9)::bigint")
        cur.execute("INSERT INTO sms_ledger_entries " + select)
        cur.execute(
            "ALTER TABLE sms_ledger_entries ADD CONSTRAINT sms_ledger_entries_pkey "
            "PRIMARY KEY (phone, campaign)"
        )
        cur.execute("CREATE INDEX sms_ledger_entries_updated ON sms_ledger_entries (updated_at)")
    db.autocommit = True
    with db.cursor() as cur:
        cur.execute("VACUUM ANALYZE sms_ledger_entries")
    db.close()


def create_database(url: str, name: str) -> str:
    """A new database on the server of ``url``; its URL."""
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(url)
    db = psycopg2.connect(host=u.host, port=u.port, user=u.username, dbname=u.database)
    db.autocommit = True
    with db.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    db.close()
    return u.set(database=name).render_as_string(hide_password=False)


async def one_campaign(url: str, key: bytes, n: int, per_request: int) -> dict[str, float]:
    """The ledger work of one campaign of ``n`` numbers, timed; seconds per number."""
    ledger = SqlLedger(url, f"bench/{uuid.uuid4().hex}", "bench", key=key, retention_days=180)
    cpu0, t0 = time.process_time(), time.perf_counter()
    await ledger.open()
    t_open = time.perf_counter()
    claim_s = send_s = 0.0
    audience = [phone(i) for i in range(n)]
    for start in range(0, n, CHUNK):
        chunk = audience[start : start + CHUNK]
        t = time.perf_counter()
        verdicts = await ledger.claim(chunk)
        claim_s += time.perf_counter() - t
        assert not verdicts, f"{len(verdicts)} numbers not ours"
        batches = iter([chunk[i : i + per_request] for i in range(0, len(chunk), per_request)])

        async def worker(batches: Any = batches) -> None:
            for batch in batches:
                await ledger.mark_sending(batch)
                ledger.record(batch, ACCEPTED)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        send_s += time.perf_counter() - t
    t = time.perf_counter()
    await ledger.close()
    t_end = time.perf_counter()
    return {
        "total_us": (t_end - t0) / n * 1e6,
        "cpu_us": (time.process_time() - cpu0) / n * 1e6,
        "claim_us": claim_s / n * 1e6,
        "mark_record_us": send_s / n * 1e6,
        "open_ms": (t_open - t0) * 1000,
        "close_ms": (t_end - t) * 1000,
    }


def run(url: str, key: bytes, n: int, per_request: int) -> dict[str, float]:
    from airflow_provider_sms.dispatch import event_loop

    return dict(event_loop.run(one_campaign(url, key, n, per_request)))  # as the hooks run a campaign


def summary(label: str, runs: list[dict[str, float]]) -> str:
    def fmt(k: str) -> str:
        values = [r[k] for r in runs]
        return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    keys = ("total_us", "cpu_us", "claim_us", "mark_record_us", "open_ms", "close_ms")
    return f"  {label:<16} " + "  ".join(f"{k} {fmt(k)}" for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, default=10_000_000, help="rows already in the ledger")
    parser.add_argument("--numbers", type=int, default=1_000_000, help="distinct numbers in the history")
    parser.add_argument("--campaign", type=int, default=20_000, help="numbers in the measured campaign")
    parser.add_argument("--per-request", type=int, default=1, help="numbers marked per request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="SQLite history file: built if missing, kept, reused")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL (a private server) instead")
    args = parser.parse_args()
    campaigns = max(1, args.history // args.numbers)
    if args.campaign > args.numbers:
        parser.error("--campaign must be at most --numbers (the audience is drawn from the history)")
    key = secrets.token_bytes(32)
    key_file = args.keep.with_suffix(".key") if args.keep else None
    if key_file and key_file.exists():
        key = bytes.fromhex(key_file.read_text())
    tmp = Path(tempfile.mkdtemp(prefix="sms-ledger-history-"))
    atexit.register(shutil.rmtree, tmp, True)  # the history (2.7 GB) unless --keep put it elsewhere
    server: Any = None
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    started = time.perf_counter()
    if args.postgres:
        sys.path.insert(0, str(ROOT))
        from tests.pgserver import PostgresServer

        server = PostgresServer("history").start()
        history_url = server.url
        build_postgres(history_url, key, args.numbers, campaigns)
    else:
        path = args.keep or tmp / "history.db"
        if not path.exists():
            build_sqlite(path, key, args.numbers, campaigns)
            if key_file:
                key_file.touch(0o600)
                key_file.write_text(key.hex())
        history_url = f"sqlite:///{path}"
    print(
        f"history: {args.numbers * campaigns:,} rows ({args.numbers:,} numbers x {campaigns} campaigns), "
        f"ready in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    results: dict[str, list[dict[str, float]]] = {"empty": [], "10M history": []}
    try:
        for i in range(args.rounds):
            if args.postgres:  # a new database each round, on the same server
                empty_url = create_database(history_url, f"empty{i}")
            else:
                empty_url = f"sqlite:///{tmp}/empty{i}.db"
            for label, url in (("empty", empty_url), ("10M history", history_url)):
                results[label].append(run(url, key, args.campaign, args.per_request))
                print(
                    f"round {i + 1} {label}: {results[label][-1]['total_us']:.1f} µs/number "
                    f"(load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()
    backend = "PostgreSQL (fsync off)" if args.postgres else "SQLite (WAL, synchronous=FULL)"
    print(
        f"{backend}: a campaign of {args.campaign:,} numbers, {args.per_request} per request, "
        f"{WORKERS} workers; per number, µs: median (range) of {args.rounds} rounds"
    )
    for label, runs in results.items():
        print(summary(label, runs))
    empty = statistics.median(r["total_us"] for r in results["empty"])
    full = statistics.median(r["total_us"] for r in results["10M history"])
    print(f"  history / empty: {full / empty:.2f}x (goal: at most 1.5x)")


if __name__ == "__main__":
    main()

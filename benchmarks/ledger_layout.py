"""Would another key order free the SQLite ledger's claim from the size of its history? A raw-SQLite A/B.

The ledger's claim inserts one row per number into ``sms_ledger_entries``, whose key is number first
(``phone, campaign``) so that the contact history can look a number up across campaigns. With
10,000,000 rows of history each insert lands at a random place in a B-tree far larger than the page
cache: most of the history's cost (``ledger_history.py``). This script measures, on plain ``sqlite3``
with the ledger's pragmas, that claim in two layouts:

- ``current``: key ``(phone, campaign)``, index ``(updated_at)`` (the retention's);
- ``by_day``: key ``(campaign, phone)`` (a new campaign's rows land together) and an index
  ``(day, phone)`` (day = ``updated_at`` in whole days) that serves both the retention and the contact
  history, which then probes one entry per day of its window and number.

Each layout gets a history of ``--history`` rows (10 campaigns of ``--history / 10`` numbers, accepted,
a day apart over the last 10 days) and an empty file; each round claims ``--campaign`` new numbers
under a new campaign key in chunks of 5,000 (one ``INSERT ... SELECT FROM json_each`` a chunk, as
the ledger does), then runs the contact history's query for a chunk of numbers (with the history:
numbers it holds) over 1, 7 and 30 days. Prints medians per number.

    python benchmarks/ledger_layout.py                 # 10,000,000 rows: builds take 3 to 4 min each
    python benchmarks/ledger_layout.py --history 1000000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import secrets
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

CHUNK = 5000
DAY = 86_400
COLUMNS = (
    "phone TEXT NOT NULL, campaign TEXT NOT NULL, status TEXT NOT NULL, owner TEXT NOT NULL, "
    "code TEXT NOT NULL, message TEXT NOT NULL, gateway_id TEXT NOT NULL, updated_at REAL NOT NULL"
)
SCHEMA = {
    "current": [
        f"CREATE TABLE e ({COLUMNS}, PRIMARY KEY (phone, campaign))",
        "CREATE INDEX e_updated ON e (updated_at)",
    ],
    "by_day": [
        f"CREATE TABLE e ({COLUMNS}, day INTEGER NOT NULL, PRIMARY KEY (campaign, phone))",
        "CREATE INDEX e_day ON e (day, phone)",
    ],
}


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "cache_size = -16384", "synchronous = FULL"):
        db.execute(f"PRAGMA {pragma}")
    return db


def row_values(layout: str) -> str:
    return "?, ?, ?, ?, ?, ?, ?, ?" + (", ?" if layout == "by_day" else "")


def build(path: Path, layout: str, history: int) -> list[str]:
    """A ledger file holding ``history`` rows: its numbers, each accepted once a day for 10 days."""
    db = connect(path)
    for statement in SCHEMA[layout]:
        db.execute(statement)
    numbers = [secrets.token_hex(16) for _ in range(max(1, history // 10))]
    start = time.time() - 10 * DAY
    for c in range(10 if history else 0):
        at = start + c * DAY
        extra = (int(at // DAY),) if layout == "by_day" else ()
        rows = [(p, f"campaign-{c}", "accepted", "o", "0", "ok", "g", at, *extra) for p in numbers]
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO e VALUES ({row_values(layout)})", rows)
        db.execute("COMMIT")
    db.close()
    return numbers


def claim(db: sqlite3.Connection, layout: str, fresh: list[str]) -> float:
    """µs per number to claim ``fresh`` under a new campaign key, a chunk per transaction."""
    campaign = f"new-{secrets.token_hex(4)}"
    day = ", ?" if layout == "by_day" else ""
    sql = (
        f"INSERT INTO e SELECT value, ?, 'claimed', 'me', '', '', '', ?{day} FROM json_each(?) "
        "WHERE true ON CONFLICT DO NOTHING"
    )
    started = time.perf_counter()
    for i in range(0, len(fresh), CHUNK):
        now = time.time()
        params = (
            campaign,
            now,
            *((int(now // DAY),) if layout == "by_day" else ()),
            json.dumps(fresh[i : i + CHUNK]),
        )
        db.execute("BEGIN IMMEDIATE")
        db.execute(sql, params)
        db.execute("COMMIT")
    return (time.perf_counter() - started) / len(fresh) * 1e6


def history_query(db: sqlite3.Connection, layout: str, numbers: list[str], days: int) -> float:
    """µs per number for the contact history of ``numbers`` over the last ``days`` days."""
    now = time.time()
    since = now - days * DAY
    given = json.dumps(numbers)
    where = "phone IN (SELECT value FROM json_each(?)) AND status = 'accepted' AND updated_at >= ?"
    params: tuple[object, ...] = (given, since)
    if layout == "by_day":
        where = f"day IN (SELECT value FROM json_each(?)) AND {where}"
        params = (json.dumps(list(range(int(since // DAY), int(now // DAY) + 1))), *params)
    started = time.perf_counter()
    db.execute(f"SELECT phone, count(*) FROM e WHERE {where} GROUP BY phone", params).fetchall()
    return (time.perf_counter() - started) / len(numbers) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--history", type=int, default=10_000_000)
    parser.add_argument("--campaign", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sms-ledger-layout-") as folder:
        for layout in SCHEMA:
            started = time.monotonic()
            full = Path(folder) / f"{layout}-history.db"
            known = build(full, layout, args.history)
            print(f"{layout}: {args.history:,} rows of history built in {time.monotonic() - started:.0f} s")
            results: dict[str, list[float]] = {}
            for r in range(args.rounds):
                empty = Path(folder) / f"{layout}-empty-{r}.db"
                build(empty, layout, 0)
                for name, path in (("empty", empty), ("history", full)):
                    db = connect(path)
                    fresh = [secrets.token_hex(16) for _ in range(args.campaign)]
                    results.setdefault(f"claim, {name}", []).append(claim(db, layout, fresh))
                    # a chunk of numbers the history knows (10 acceptances each), or new ones
                    asked = known[:CHUNK] if name == "history" else fresh[:CHUNK]
                    for days in (1, 7, 30):
                        key = f"contact history {days} d, {name}"
                        results.setdefault(key, []).append(history_query(db, layout, asked, days))
                    db.close()
            for key, values in results.items():
                low, high = min(values), max(values)
                print(f"  {key}: {statistics.median(values):.1f} µs/number ({low:.1f} to {high:.1f})")
            full.unlink()


if __name__ == "__main__":
    main()

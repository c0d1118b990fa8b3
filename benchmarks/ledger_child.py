"""Would the ledger's database work in a child process lift the ihuyi path? A measured probe, not shipped.

``SqlLedger`` runs its SQLite work on a thread of the task's own process. SQLite releases the GIL while
it works, but the thread takes it back after every call, and the event loop, the recipient reader and
the ledger thread together keep one core busy while the other is mostly idle (see README, Performance).
This probe keeps ``SqlLedger``'s logic and moves only its database calls (claim, group write, count) to
a child process, over a ``multiprocessing`` pipe, then runs bench_send.py's ihuyi campaign (100 numbers
per request, 20 ms latency, concurrency 64) with each ledger, interleaved over several rounds.

    python benchmarks/ledger_child.py              # 3 rounds of 600,000 numbers each way
    python benchmarks/ledger_child.py --rounds 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
from functools import partial
from typing import TYPE_CHECKING, Any

from bench_send import CONCURRENCY, LATENCY_MS, Sandbox, bench_ihuyi, new_sqlite_url

from airflow_provider_sms.dispatch.sql_ledger import LedgerError, SqlLedger, _Values

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from airflow_provider_sms.dispatch.outcomes import Verdict

NUMBERS = 600_000


def serve(conn: Connection, url: str, campaign: str, owner: str) -> None:
    """The child: a real ``SqlLedger``, its database methods run on its thread, one message at a time."""
    ledger = SqlLedger(url, campaign, owner)
    calls: dict[str, Any] = {
        "claim": ledger._claim_sync,
        "write": ledger._write_group,
        "count": lambda _: ledger._done_count_sync(),
    }
    try:
        while True:
            try:
                kind, argument = conn.recv()
            except EOFError:
                return
            try:
                result = ledger._db.submit(partial(calls[kind], argument)).result()
            except Exception as exc:  # the parent raises it as a LedgerError
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
            else:
                conn.send(("ok", result))
    finally:
        ledger._db.stop_now(ledger._dispose)


class ChildLedger(SqlLedger):
    """``SqlLedger`` whose database calls run in a child process; everything else is inherited."""

    def _create_table(self) -> None:  # runs on the ledger thread, first: start the child there
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe()
        url = str(self._engine.url.render_as_string(hide_password=False))
        self._child = ctx.Process(target=serve, args=(child_end, url, self.campaign, self.owner), daemon=True)
        self._child.start()
        child_end.close()

    def _call(self, kind: str, argument: object) -> Any:
        self._conn.send((kind, argument))
        status, result = self._conn.recv()
        if status == "error":
            raise LedgerError(result)
        return result

    def _claim_sync(self, phones: list[str]) -> dict[str, Verdict]:
        return dict(self._call("claim", phones))

    def _write_group(self, pending: dict[str, _Values]) -> None:
        self._call("write", pending)

    def _done_count_sync(self) -> int:
        return int(self._call("count", None))

    def _dispose(self) -> None:
        self._conn.close()
        self._child.join(30)
        self._engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"thread": [], "child process": []}
    sandbox = Sandbox(LATENCY_MS, record=False)
    try:
        for i in range(args.rounds):
            for way, kind in (("thread", SqlLedger), ("child process", ChildLedger)):
                # Each run has its own ledger file, so every run can send the same numbers.
                ledger = kind(new_sqlite_url(), "child-probe", "bench")
                rate = float(bench_ihuyi(sandbox.url, NUMBERS, ledger)["per_second"])
                rates[way].append(rate)
                print(f"round {i + 1} {way:>13}: {rate:9,.0f} numbers/s", flush=True)
    finally:
        sandbox.close()
    print(f"ihuyi 100/request, {LATENCY_MS} ms, concurrency {CONCURRENCY}, SQLite ledger, medians:")
    for way, values in rates.items():
        print(f"  database work on a {way:>13}: {statistics.median(values):9,.0f} numbers/s")


if __name__ == "__main__":
    main()

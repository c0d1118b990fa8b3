"""Where the durable ledger's cost on the juncdt path (1 number per request) comes from.

Runs the same campaign as bench_send.py's (a) (20 ms latency, concurrency 64) three ways, interleaved
over several rounds because this machine's runs vary:
  none        no ledger;
  round trip  a ledger that does no database work, but makes each request wait one 0.5 ms commit
              round trip before it starts, as a durable "sending" mark must: the cost of the
              design itself, whatever the database;
  sqlite      the real SQLite ledger; also reports how long requests waited for their mark.

    python benchmarks/ledger_cost.py            # 3 rounds of 12,000 recipients each way
    python benchmarks/ledger_cost.py --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import TYPE_CHECKING

from bench_send import CONCURRENCY, LATENCY_MS, Sandbox, bench_project_juncdt, new_sqlite_url

from airflow_provider_sms.dispatch.ledger import NullLedger
from airflow_provider_sms.dispatch.sql_ledger import SqlLedger

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_sms.dispatch.ledger import Ledger

ROUND_TRIP_S = 0.0005


class RoundTripLedger(NullLedger):
    """No database: each mark waits one commit round trip on the event loop, nothing more."""

    async def mark_sending(self, phones: Sequence[str]) -> None:
        await asyncio.sleep(ROUND_TRIP_S)


class TimedSqlLedger(SqlLedger):
    """The real ledger, noting how long each request waited for its ``sending`` mark."""

    def __init__(self, url: str, campaign: str, owner: str) -> None:
        super().__init__(url, campaign, owner)
        self.waits: list[float] = []

    async def mark_sending(self, phones: Sequence[str]) -> None:
        started = time.perf_counter()
        await super().mark_sending(phones)
        self.waits.append(time.perf_counter() - started)


def ways() -> dict[str, bool | Ledger]:
    """The three ledgers, new for each round (the campaign closes its ledger)."""
    timed = TimedSqlLedger(new_sqlite_url(), f"cost-{time.time()}", "bench")
    return {"none": False, "round trip": RoundTripLedger(), "sqlite": timed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recipients", type=int, default=12_000)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {}
    waits: list[float] = []
    sandbox = Sandbox(LATENCY_MS, record=False)
    try:
        for i in range(args.rounds):
            for way, (name, ledger) in enumerate(ways().items()):
                start = 5 * 10**8 + (3 * i + way) * args.recipients
                result = bench_project_juncdt(sandbox.url, args.recipients, ledger, start)
                rates.setdefault(name, []).append(result["per_second"])
                if isinstance(ledger, TimedSqlLedger):
                    waits += ledger.waits
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()), flush=True)
    finally:
        sandbox.close()
    none = statistics.median(rates["none"])
    print(f"medians over {args.rounds} rounds (juncdt, 1 number/request, concurrency {CONCURRENCY}):")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:<11} {median:>8,.0f} recipients/s  {median / none:.2f} of no ledger")
    q = statistics.quantiles(waits, n=100)
    marks = {"p50": q[49], "p90": q[89], "p99": q[98]}
    shown = ", ".join(f"{k} {v * 1000:.1f}" for k, v in marks.items())
    print(f"  sqlite: how long a request waited for its sending mark, ms: {shown}")


if __name__ == "__main__":
    main()

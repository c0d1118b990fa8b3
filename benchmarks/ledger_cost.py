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
import tempfile
import time
from typing import TYPE_CHECKING, Any

from bench_send import CONCURRENCY, LATENCY_MS, Sandbox, juncdt_client, numbers

from airflow_provider_sms.dispatch.engine import Campaign, CampaignOptions
from airflow_provider_sms.dispatch.ledger import NullLedger
from airflow_provider_sms.dispatch.recipients import Cleaner, rows_from_items
from airflow_provider_sms.dispatch.senders import SmsSender
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

    waits: list[float]

    async def mark_sending(self, phones: Sequence[str]) -> None:
        started = time.perf_counter()
        await super().mark_sending(phones)
        self.waits.append(time.perf_counter() - started)


def run(url: str, n: int, ledger: Ledger | None, start: int) -> float:
    sender = SmsSender(juncdt_client(url), "TPL_CODE", sign_code=None, numbers_per_request=1)
    audience = numbers(n, start)
    campaign = Campaign(
        sender,
        lambda: rows_from_items(audience),
        lambda: Cleaner(shared_params={"code": "1234"}, use_params=True),
        CampaignOptions(concurrency=CONCURRENCY, progress_interval=3600),
        ledger=ledger,
    )
    started = time.perf_counter()
    summary = asyncio.run(campaign.run())
    elapsed = time.perf_counter() - started
    assert summary.counts["accepted"] == n, summary.as_dict()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recipients", type=int, default=12_000)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"none": [], "round trip": [], "sqlite": []}
    waits: list[float] = []
    sandbox = Sandbox(LATENCY_MS, record=False)
    try:
        for i in range(args.rounds):
            base = 5 * 10**8 + i * 3 * args.recipients
            rates["none"].append(run(sandbox.url, args.recipients, None, base))
            trip = RoundTripLedger()
            rates["round trip"].append(run(sandbox.url, args.recipients, trip, base + args.recipients))
            tmp = tempfile.mkdtemp(prefix="sms-ledger-cost-")
            timed = TimedSqlLedger(f"sqlite:///{tmp}/ledger.db", f"cost-{time.time()}", "bench")
            timed.waits = []
            rates["sqlite"].append(run(sandbox.url, args.recipients, timed, base + 2 * args.recipients))
            waits += timed.waits
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()), flush=True)
    finally:
        sandbox.close()
    none = statistics.median(rates["none"])
    print(f"medians over {args.rounds} rounds (juncdt, 1 number/request, concurrency {CONCURRENCY}):")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:<11} {median:>8,.0f} recipients/s  {median / none:.2f} of no ledger")
    q = statistics.quantiles(waits, n=100)
    marks: dict[str, Any] = {"p50": q[49], "p90": q[89], "p99": q[98]}
    shown = ", ".join(f"{k} {v * 1000:.1f}" for k, v in marks.items())
    print(f"  sqlite: how long a request waited for its sending mark, ms: {shown}")


if __name__ == "__main__":
    main()

"""What the durable ledger costs the send path, and where its database work runs best.

Runs bench_send.py's campaigns (20 ms latency, concurrency 64) interleaved over several rounds,
because this machine's runs vary, with these ledgers:
  none        no ledger;
  round trip  no database work, but each request waits one 0.5 ms commit round trip before it
              starts, as a durable "sending" mark must: the cost of the design itself;
  thread      SqlLedger: SQLite on a thread of the sending process;
  process     ProcessLedger (what the operators use): SQLite in a child process;
both with their send journal, as the operators open them (so 16 batches are marked ahead).
The juncdt campaign (1 number per request) runs with each; the ihuyi one (100 per request) with the
thread and the process. Besides recipients/s it reports CPU per request: the sending process, the
ledger's child process, and the sandbox (the two cores are shared by all three), and how long
requests waited for their "sending" mark.

    python benchmarks/ledger_cost.py            # 3 rounds: 12,000 juncdt and 600,000 ihuyi numbers each way
    python benchmarks/ledger_cost.py --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from typing import TYPE_CHECKING, Any

from bench_send import CONCURRENCY, LATENCY_MS, Sandbox, bench_ihuyi, bench_project_juncdt, new_ledger

from airflow_provider_sms.dispatch.ledger import NullLedger
from airflow_provider_sms.dispatch.ledger_process import ProcessLedger
from airflow_provider_sms.dispatch.sql_ledger import SqlLedger

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from airflow_provider_sms.dispatch.ledger import Ledger
    from airflow_provider_sms.dispatch.outcomes import Verdict
    from airflow_provider_sms.dispatch.recipients import Recipient

ROUND_TRIP_S = 0.0005
IHUYI_NUMBERS = 600_000


class RoundTripLedger(NullLedger):
    """No database: each mark waits one commit round trip on the event loop, nothing more."""

    async def mark_sending(self, phones: Sequence[str]) -> None:
        await asyncio.sleep(ROUND_TRIP_S)


class Timed:
    """A ledger passed through, noting how long each request waited for its ``sending`` mark."""

    def __init__(self, ledger: Ledger, waits: list[float]) -> None:
        self.ledger = ledger
        self.waits = waits

    @property
    def journaled(self) -> bool:
        return self.ledger.journaled

    async def claim(self, recipients: Sequence[Recipient]) -> dict[str, Verdict]:
        return await self.ledger.claim(recipients)

    def started(self, phones: Sequence[str]) -> None:
        self.ledger.started(phones)

    def undelivered(self, phones: Sequence[str]) -> None:
        self.ledger.undelivered(phones)

    async def mark_sending(self, phones: Sequence[str]) -> None:
        started = time.perf_counter()
        await self.ledger.mark_sending(phones)
        self.waits.append(time.perf_counter() - started)

    def record(self, phones: Sequence[str], verdict: Verdict) -> None:
        self.ledger.record(phones, verdict)

    async def done_count(self, phones: Sequence[str] | None = None) -> int:
        return await self.ledger.done_count(phones)

    async def close(self) -> None:
        await self.ledger.close()


def cpu_seconds(who: int) -> float:
    """CPU (user + system) of this process (RUSAGE_SELF) or of its reaped children (RUSAGE_CHILDREN)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """CPU (user + system) of a running process, e.g. the sandbox."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(run: Callable[[], dict[str, Any]], requests: int, sandbox: Sandbox) -> dict[str, float]:
    """The run's rate, and CPU µs per request: sender, ledger child (reaped at close), sandbox."""
    before = [cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)]
    box = process_cpu_seconds(sandbox.proc.pid)
    result = run()
    used = [
        cpu_seconds(resource.RUSAGE_SELF) - before[0],
        cpu_seconds(resource.RUSAGE_CHILDREN) - before[1],
        process_cpu_seconds(sandbox.proc.pid) - box,
    ]
    per = [round(seconds / requests * 1e6) for seconds in used]
    return {"rate": result["per_second"], "sender": per[0], "child": per[1], "sandbox": per[2]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recipients", type=int, default=12_000)
    args = parser.parse_args()
    n = args.recipients
    runs: dict[str, list[dict[str, float]]] = {}
    waits: dict[str, list[float]] = {"thread": [], "process": []}
    sandbox = Sandbox(LATENCY_MS, record=False)
    try:
        for i in range(args.rounds):
            juncdt: dict[str, Callable[[], bool | Ledger]] = {
                "none": lambda: False,
                "round trip": RoundTripLedger,
                "thread": lambda: Timed(new_ledger(SqlLedger), waits["thread"]),
                "process": lambda: Timed(new_ledger(ProcessLedger), waits["process"]),
            }
            for way, (name, ledger) in enumerate(juncdt.items()):
                start = 5 * 10**8 + (4 * i + way) * n

                def run_juncdt(new: Callable[[], bool | Ledger] = ledger, at: int = start) -> dict[str, Any]:
                    return bench_project_juncdt(sandbox.url, n, new(), at)

                runs.setdefault(f"juncdt {name}", []).append(measured(run_juncdt, n, sandbox))
            for name, kind in (("thread", SqlLedger), ("process", ProcessLedger)):

                def run_ihuyi(new: type[SqlLedger] | type[ProcessLedger] = kind) -> dict[str, Any]:
                    return bench_ihuyi(sandbox.url, IHUYI_NUMBERS, new_ledger(new))

                runs.setdefault(f"ihuyi {name}", []).append(
                    measured(run_ihuyi, IHUYI_NUMBERS // 100, sandbox)
                )
            print(
                f"round {i + 1}: " + ", ".join(f"{k} {v[-1]['rate']:,.0f}/s" for k, v in runs.items()),
                flush=True,
            )
    finally:
        sandbox.close()
    print(f"medians over {args.rounds} rounds ({LATENCY_MS} ms latency, concurrency {CONCURRENCY}):")
    print(f"  {'':<20} {'recipients/s':>12}   CPU µs per request: sender, ledger child, sandbox")
    for name, values in runs.items():
        med = {key: statistics.median(v[key] for v in values) for key in values[0]}
        cpu = " ".join(f"{med[key]:>6.0f}" for key in ("sender", "child", "sandbox"))
        print(f"  {name:<20} {med['rate']:>12,.0f}   {cpu}")
    for name, marks in waits.items():
        q = statistics.quantiles(marks, n=100)
        shown = ", ".join(f"{k} {q[i] * 1000:.1f}" for k, i in (("p50", 49), ("p90", 89), ("p99", 98)))
        print(f"  juncdt {name}: how long a request waited for its sending mark, ms: {shown}")


if __name__ == "__main__":
    main()

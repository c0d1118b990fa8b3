"""Where the ledger's thread spends its time in a campaign: transactions by kind, and a profile.

Runs bench_send.py's ihuyi campaign (100 numbers per request, 20 ms latency, concurrency 64) with
``SqlLedger`` on a new SQLite file, profiles every transaction on the ledger's thread (cProfile, so
the times are inflated, the shares are not), and prints the campaign's time, the thread's time in
transactions by kind (claims, group-committed writes, heartbeats) with the CPU time the thread used
in them (the rest is waiting: for a core, the GIL, the disk), and the top functions.

    python benchmarks/ledger_profile.py                 # 100,000 numbers
    python benchmarks/ledger_profile.py --juncdt 12000  # juncdt, 1 number per request, instead
    python benchmarks/ledger_profile.py --no-profile    # the thread's times without cProfile's cost
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import time
from typing import Any

from bench_send import LATENCY_MS, Sandbox, bench_ihuyi, bench_project_juncdt, import_paths

from airflow_provider_sms.dispatch.sql_ledger import SqlLedger


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ihuyi", type=int, default=100_000, help="numbers, 100 per request")
    parser.add_argument("--juncdt", type=int, default=0, help="numbers, 1 per request (instead of ihuyi)")
    parser.add_argument("--no-profile", action="store_true", help="times only, no cProfile")
    args = parser.parse_args()
    import_paths()
    profile = cProfile.Profile()
    spent: dict[str, float] = collections.defaultdict(float)
    cpu: dict[str, float] = collections.defaultdict(float)
    count: collections.Counter[str] = collections.Counter()
    original = SqlLedger._transaction

    def transaction(conn: Any, work: Any) -> Any:  # on the ledger's thread
        kind = getattr(getattr(work, "func", work), "__name__", "?")
        kind = {
            "_write": "write (marks + outcomes)",
            "<lambda>": "claim, open, close",
            "_renew": "heartbeat",
        }.get(kind, kind)
        started, cpu_started = time.perf_counter(), time.thread_time()
        if not args.no_profile:
            profile.enable()
        try:
            return original(conn, work)
        finally:
            profile.disable()
            spent[kind] += time.perf_counter() - started
            cpu[kind] += time.thread_time() - cpu_started
            count[kind] += 1

    SqlLedger._transaction = staticmethod(transaction)  # type: ignore[method-assign]
    sandbox = Sandbox(LATENCY_MS, record=False)
    try:
        if args.juncdt:
            result = bench_project_juncdt(sandbox.url, args.juncdt, ledger=True, start=7 * 10**8)
        else:
            result = bench_ihuyi(sandbox.url, args.ihuyi, ledger=True)
    finally:
        sandbox.close()
    print(
        f"campaign: {result['recipients']:,} numbers in {result['seconds']} s ({result['per_second']:,.0f}/s)"
    )
    n = result["recipients"]
    for kind, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  ledger thread, {kind}: {count[kind]} transactions, {seconds:.2f} s (CPU {cpu[kind]:.2f} s)")
    print(
        f"  per number: {sum(spent.values()) / n * 1e6:.1f} µs in transactions, "
        f"{sum(cpu.values()) / n * 1e6:.1f} µs of the thread's CPU"
    )
    if not args.no_profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()

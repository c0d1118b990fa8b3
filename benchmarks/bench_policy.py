"""The contact policy's cost on the operators' default path: juncdt, 1 number per request, SQLite ledger.

Turns of two campaigns of new numbers each, on the sandbox at bench_send.py's latency and concurrency:
  off: no policy (as before the policy existed),
  on:  a 1,000,000-number suppression list (none of the audience on it, so both send the same
       requests), the ledger's suppression table, and a frequency cap (max_per_number=1 per 24h, one
       contact-history query per chunk of 5,000),
and reports the median rate of each and their ratio (goal: on/off >= 0.9), with what building the list
took (time, and the list's size in memory).

    python benchmarks/bench_policy.py            # 12,000 numbers a campaign, 3 turns
    python benchmarks/bench_policy.py --quick    # 1,200 numbers a campaign
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

from bench_send import LATENCY_MS, Sandbox, import_paths, juncdt_client, new_ledger, numbers

from airflow_provider_sms.dispatch.policy import ContactPolicy, SuppressionList

SUPPRESSED = 1_000_000


def campaign(url: str, audience: list[str], policy: ContactPolicy | None) -> float:
    """Recipients per second of one campaign, from ``Campaign.run`` (which opens the ledger) to its end."""
    from airflow_provider_sms.dispatch import event_loop
    from airflow_provider_sms.dispatch.engine import Campaign, CampaignOptions
    from airflow_provider_sms.dispatch.recipients import Cleaner, rows_from_items
    from airflow_provider_sms.dispatch.senders import SmsSender

    sender = SmsSender(juncdt_client(url), "TPL_CODE", sign_code=None, numbers_per_request=1)
    options = CampaignOptions(concurrency=64, progress_interval=3600, policy=policy)
    job = Campaign(
        sender,
        lambda: rows_from_items(audience),
        lambda: Cleaner(shared_params={"code": "1234"}),
        options,
        ledger=new_ledger(),
    )
    started = time.perf_counter()
    summary = event_loop.run(job.run())
    elapsed = time.perf_counter() - started
    assert summary.counts["accepted"] == len(audience), summary.as_dict()
    return len(audience) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,200 numbers a campaign")
    parser.add_argument("--rounds", type=int, default=3, help="turns of off and on; medians reported")
    args = parser.parse_args()
    n = 1_200 if args.quick else 12_000
    import_paths()
    started = time.perf_counter()
    listed = SuppressionList(numbers(SUPPRESSED, 5 * 10**8))  # numbers no campaign below sends to
    build_s = time.perf_counter() - started
    policy = ContactPolicy(suppression=listed, suppression_table=True, max_per_number=1)
    load = os.getloadavg()
    sandbox = Sandbox(LATENCY_MS, record=False)
    off: list[float] = []
    on: list[float] = []
    try:
        for turn in range(args.rounds):
            first = 2 * turn * n
            off.append(campaign(sandbox.url, numbers(n, first), None))
            on.append(campaign(sandbox.url, numbers(n, first + n), policy))
    finally:
        sandbox.close()
    results: dict[str, Any] = {
        "recipients_per_campaign": n,
        "load_average": [round(x, 2) for x in (*load, *os.getloadavg())],
        "suppression_list": {"numbers": len(listed), "build_s": round(build_s, 2), "bytes": 8 * len(listed)},
        "off_per_second": [round(x, 1) for x in off],
        "on_per_second": [round(x, 1) for x in on],
        "on_over_off": round(statistics.median(on) / statistics.median(off), 3),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""The bulk engine against the sandbox over loopback: batching, dedupe, rate limit, retries by class,
stop on fatal, dry run, reports. No Airflow here: the engine is used as the hooks use it."""

from __future__ import annotations

import asyncio
import collections
import csv
import gc
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.dispatch.engine import CHUNK, Campaign, CampaignOptions, ReportError
from airflow_provider_sms.dispatch.gc_threshold import YOUNG_THRESHOLD
from airflow_provider_sms.dispatch.outcomes import Summary
from airflow_provider_sms.dispatch.recipients import (
    Cleaner,
    Recipient,
    Refused,
    Row,
    rows_from_file,
    rows_from_items,
)
from airflow_provider_sms.dispatch.report import ReportWriter
from airflow_provider_sms.dispatch.retry import RetryPolicy
from airflow_provider_sms.dispatch.senders import MmsSender, SmsSender
from airflow_provider_sms.dispatch.sql_ledger import SqlLedger
from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import (
    FAST_RETRY,
    control,
    deliveries,
    force,
    ihuyi,
    juncdt,
    numbers,
    raises,
    run_mms,
    run_sms,
)

KEY = b"k" * 32  # the ledger's hash key


def requests_log(server: SandboxServer) -> list[dict[str, Any]]:
    data = control(server, "GET", "/_sandbox/requests")
    return list(data["requests"] if isinstance(data, dict) else data)


async def test_batching_dedupe_and_rejects(gw: SandboxServer) -> None:
    audience = [*numbers(250), "+86 138-0000-0001", "12345", "abc", *numbers(5)]
    summary = await run_mms(gw, audience, per_request=100)
    assert summary.counts["accepted"] == 250
    assert summary.counts["duplicate"] == 6
    assert summary.counts["rejected"] == 2
    assert summary.total == len(audience)
    assert summary.requests == 3  # 100 + 100 + 50
    sizes = sorted(r["numbers"] for r in requests_log(gw))
    assert sizes == [50, 100, 100]
    got = [d["number"] for d in deliveries(gw, "ihuyi")]
    assert len(got) == len(set(got)) == 250


async def test_juncdt_joins_only_equal_params(gw: SandboxServer) -> None:
    rows = [{"phone": n, "params": {"code": "1" if i % 2 else "2"}} for i, n in enumerate(numbers(40))]
    summary = await run_sms(gw, rows, per_request=500)
    assert summary.counts["accepted"] == 40
    assert summary.requests == 2
    by_request = collections.Counter(
        json.dumps(d["params"], sort_keys=True) for d in deliveries(gw, "juncdt")
    )
    assert by_request == {'{"code": "1"}': 20, '{"code": "2"}': 20}


async def test_personalised_rows_checked_before_sending(gw: SandboxServer) -> None:
    rows = [
        {"phone": "13800000001", "params": {"name": "a", "order": "1"}},
        {"phone": "13800000002", "params": {"name": "b"}},
        {"phone": "13800000003", "params": {"name": "c", "order": "3", "extra": "x"}},
    ]
    summary = await run_sms(gw, rows, template="TPL_NOTICE")
    assert summary.counts["accepted"] == 1 and summary.counts["rejected"] == 2
    reasons = " ".join(summary.reasons)
    assert "missing order" in reasons and "unexpected extra" in reasons


def test_rows_without_params_are_judged_by_the_names_in_force() -> None:
    # Rows without params of their own share one answer, until a row with params settles the names.
    rows = [Row(0, "13800000001"), Row(1, "13800000002", {"code": "1"}), Row(2, "13800000003")]
    first, second, third = Cleaner().clean(rows)
    assert isinstance(first, Recipient) and first.params is None
    assert isinstance(second, Recipient) and second.params == {"code": "1"}
    assert isinstance(third, Refused) and third.reason == "params missing code"
    shared = list(Cleaner(shared_params={"code": 7}).clean([Row(0, "13800000001"), Row(1, "13800000002")]))
    assert [r.params for r in shared if isinstance(r, Recipient)] == [{"code": "7"}, {"code": "7"}]


async def test_rate_limit_is_never_exceeded(gw: SandboxServer) -> None:
    rate = 50
    started = time.monotonic()
    summary = await run_sms(
        gw,
        [{"phone": n} for n in numbers(150)],
        params={"code": "1"},
        concurrency=32,
        requests_per_second=rate,
    )
    elapsed = time.monotonic() - started
    assert summary.counts["accepted"] == 150
    stamps = sorted(r["at"] for r in requests_log(gw))
    worst = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert worst <= rate, f"{worst} requests in one second"
    assert elapsed >= (150 - rate) / rate  # paced, not burst


async def test_a_rate_below_one_per_second_spaces_every_request() -> None:
    # 0.8/s: one request per 1.25 s, also right after an idle spell (the window was 1 s: 1.04 s apart).
    from airflow_provider_sms.dispatch.ratelimit import RateLimiter

    limiter = RateLimiter(0.8)
    starts = []
    for _ in range(2):
        await limiter.acquire()
        starts.append(time.monotonic())
    assert starts[1] - starts[0] >= 1.25


async def test_transient_codes_retried_then_succeed(gw: SandboxServer) -> None:
    force(gw, "juncdt", "sendMessage", "10001", times=2)
    summary = await run_sms(gw, ["13800000001"], params={"code": "1"}, concurrency=1)
    assert summary.counts["accepted"] == 1 and summary.requests == 3
    assert len(deliveries(gw)) == 1


async def test_transient_exhausted_is_failed_with_the_gateway_words(gw: SandboxServer) -> None:
    force(gw, "ihuyi", "SendMms", "0", times=10)
    summary = await run_mms(gw, ["13800000001"], concurrency=1)
    assert summary.counts["failed"] == 1 and summary.requests == FAST_RETRY.max_attempts
    assert any(key.startswith("failed: 0 ") for key in summary.reasons)
    assert summary.stopped is None


async def test_5xx_retried(gw: SandboxServer) -> None:
    control(gw, "POST", "/_sandbox/faults", {"http_5xx_rate": 0.5, "seed": 7})
    # 16 tries: at a 50% fault rate, 8 let one of the 40 fail now and then (1 in 256 each).
    summary = await run_sms(gw, numbers(40), params={"code": "1"}, retry=RetryPolicy(16, 0.001, 0.01))
    assert summary.counts["accepted"] == 40
    assert summary.requests > 40
    assert len(deliveries(gw)) == 40


async def test_unknown_code_fails_that_batch_only(gw: SandboxServer) -> None:
    force(gw, "juncdt", "sendMessage", "39999", msg="新规则")
    summary = await run_sms(gw, numbers(5), params={"code": "1"}, concurrency=1)
    assert summary.counts == {**summary.counts, "accepted": 4, "failed": 1}
    assert summary.requests == 5 and summary.stopped is None
    assert "failed: 39999 新规则" in summary.reasons


async def test_bad_input_code_reported_and_campaign_goes_on(gw: SandboxServer) -> None:
    control(gw, "POST", "/_sandbox/accounts", {"ihuyi": {"blacklist": ["13800000003"]}})
    summary = await run_mms(gw, numbers(6), per_request=1, concurrency=1)
    assert summary.counts["accepted"] == 5 and summary.counts["rejected"] == 1
    assert summary.stopped is None


async def test_fatal_stops_new_requests_and_reports_everyone(gw: SandboxServer) -> None:
    control(gw, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 300}})
    buffer = io.StringIO()
    report = ReportWriter(buffer, "csv")
    audience = numbers(2000)
    summary = await run_mms(gw, audience, per_request=100, concurrency=4, report=report)
    assert summary.stopped and "4051" in summary.stopped
    log = requests_log(gw)
    fatal_at = next(i for i, r in enumerate(log) if r["code"] == "4051")
    assert len(log) - fatal_at - 1 <= 3  # only requests already in flight (concurrency - 1)
    assert summary.counts["accepted"] == 300 == len(deliveries(gw))
    assert summary.total == 2000
    assert summary.counts["not_sent"] + summary.counts["failed"] == 1700
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert len(rows) == 2000
    assert collections.Counter(r["outcome"] for r in rows) == {k: v for k, v in summary.counts.items() if v}
    assert all("****" in r["phone"] for r in rows)


async def test_a_source_failing_midway_stops_the_campaign_with_its_error(gw: SandboxServer) -> None:
    # The engine reads the next chunk while it claims and queues this one: the failure in the chunk
    # read ahead must still stop the campaign, and nothing from past the failure may be sent.
    def rows() -> Iterator[Any]:
        yield from numbers(CHUNK + 10)
        raise OSError("connection reset")

    sender = MmsSender(ihuyi(gw), "1001", pid=1, send_time="", numbers_per_request=100)
    opts = CampaignOptions(concurrency=4, retry=FAST_RETRY)
    campaign = Campaign(sender, lambda: rows_from_items(rows()), lambda: Cleaner(use_params=False), opts)
    summary = await campaign.run()  # everyone read keeps an outcome, and the summary says why it stopped
    assert summary is campaign.summary
    # The rows read before the failure (the 10 of the chunk it cut short included) keep an outcome.
    assert summary.stopped == f"reading recipients failed after row {CHUNK + 10}: OSError: connection reset"
    assert summary.stop_retryable  # storage may be back on the next try
    got = [d["number"] for d in deliveries(gw, "ihuyi")]
    assert len(got) == len(set(got)) <= CHUNK + 10
    assert set(got) <= set(numbers(CHUNK + 10))
    counts = campaign.summary.counts
    assert counts["accepted"] == len(got) and counts["accepted"] + counts["not_sent"] == CHUNK + 10


def ledger_statuses(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(
            conn.execute("SELECT status, count(*) FROM sms_ledger_entries GROUP BY status").fetchall()
        )


async def test_a_read_failure_leaves_no_claimed_number_without_an_outcome(
    gw: SandboxServer, tmp_path: Path
) -> None:
    # The first chunk ends in a partial batch (90 numbers claimed, waiting for 10 more) when the next
    # read fails: those 90 must end not_sent, in the summary and in the ledger, not stay "claimed".
    def rows() -> Iterator[Any]:
        yield from numbers(CHUNK - 10)
        yield from ["12345"] * 10
        yield from numbers(50, start=CHUNK)
        raise OSError("connection reset")

    db = tmp_path / "ledger.db"
    sender = MmsSender(ihuyi(gw), "1001", pid=1, send_time="", numbers_per_request=100)
    ledger = SqlLedger(f"sqlite:///{db}", "campaign", "owner", key=KEY)
    opts = CampaignOptions(concurrency=4, retry=FAST_RETRY)
    campaign = Campaign(
        sender, lambda: rows_from_items(rows()), lambda: Cleaner(use_params=False), opts, ledger=ledger
    )
    assert "connection reset" in str((await campaign.run()).stopped)
    counts = campaign.summary.counts
    assert campaign.summary.total == CHUNK + 50  # every row read has its outcome
    assert counts["rejected"] == 10 and counts["accepted"] == len(deliveries(gw, "ihuyi"))
    assert counts["not_sent"] == CHUNK + 40 - counts["accepted"] >= 40
    assert ledger_statuses(db) == {"accepted": counts["accepted"], "not_sent": counts["not_sent"]}


async def test_the_balance_guard_counts_what_this_audience_still_needs(
    gw: SandboxServer, tmp_path: Path
) -> None:
    # Two parts of one campaign (a mapped task, one dedupe key): the second part's guard must not
    # subtract what the first part sent; a rerun of the first part needs nothing more.
    db = tmp_path / "ledger.db"
    asked: list[int] = []

    async def guard(needed: int) -> None:
        asked.append(needed)

    async def part(audience: list[str], owner: str) -> Summary:
        sender = MmsSender(ihuyi(gw), "1001", pid=1, send_time="", numbers_per_request=100)
        opts = CampaignOptions(concurrency=4, retry=FAST_RETRY, preflight=guard)
        ledger = SqlLedger(f"sqlite:///{db}", "promo", owner, key=KEY)
        items = [*audience, audience[0], "bad"]  # a duplicate and an invalid number count for nothing
        return await Campaign(
            sender, lambda: rows_from_items(items), lambda: Cleaner(use_params=False), opts, ledger=ledger
        ).run()

    assert (await part(numbers(300), "part-0")).counts["accepted"] == 300
    assert (await part(numbers(300, start=300), "part-1")).counts["accepted"] == 300
    assert (await part(numbers(300), "part-0")).counts["accepted_earlier"] == 300  # its own earlier try
    assert asked == [300, 300, 0]


async def test_a_report_that_cannot_be_written_stops_the_campaign_and_says_so(gw: SandboxServer) -> None:
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            if self.tell() > 2000:
                raise OSError(28, "No space left on device")
            return super().write(text)

    report = ReportWriter(FullDisk(), "csv")
    sender = MmsSender(ihuyi(gw), "1001", pid=1, send_time="", numbers_per_request=10)
    opts = CampaignOptions(concurrency=4, retry=FAST_RETRY)
    campaign = Campaign(
        sender, lambda: rows_from_items(numbers(3000)), lambda: Cleaner(use_params=False), opts, report=report
    )
    with raises(ReportError, match=r"report could not be written: OSError: .*No space left"):
        await asyncio.wait_for(campaign.run(), timeout=60)  # before the fix: it never returned
    summary = campaign.summary
    assert summary.stopped is not None and "No space left" in summary.stopped
    assert summary.total == 3000 and summary.counts["accepted"] == len(deliveries(gw)) < 3000
    assert summary.counts["accepted"] + summary.counts["not_sent"] == 3000


async def test_a_batch_the_client_refuses_to_build_is_failed_not_ambiguous(gw: SandboxServer) -> None:
    # juncdt takes at most 500 numbers per request: nothing was sent, so a later run may send them.
    summary = await run_sms(gw, numbers(600), per_request=600, params={"code": "1"})
    assert summary.counts["failed"] == 600 and summary.counts["ambiguous"] == 0
    assert summary.stopped is not None and "at most 500 numbers" in summary.stopped
    assert requests_log(gw) == []


async def test_resend_ambiguous_ends_ambiguous_when_no_try_succeeded(
    gw: SandboxServer, tmp_path: Path
) -> None:
    # Every reply is cut off after the gateway took the message: each try may have been delivered.
    control(gw, "POST", "/_sandbox/faults", {"reset_rate": 1.0})
    db = tmp_path / "ledger.db"
    first = await run_sms(
        gw,
        ["13800000001"],
        params={"code": "1"},
        resend_ambiguous=True,
        ledger=SqlLedger(f"sqlite:///{db}", "c", "o", key=KEY),
    )
    assert first.requests == 3 and first.counts["ambiguous"] == 1 and first.counts["failed"] == 0
    assert ledger_statuses(db) == {"ambiguous": 1}
    # So a later run (not resending ambiguous numbers) leaves it alone: it may have 3 copies already.
    second = await run_sms(
        gw, ["13800000001"], params={"code": "1"}, ledger=SqlLedger(f"sqlite:///{db}", "c", "o2", key=KEY)
    )
    assert second.counts["ambiguous"] == 1 and second.requests == 0
    assert len(deliveries(gw)) == 3


@pytest.mark.parametrize("fails", [False, True])
async def test_the_campaign_puts_back_the_gc_thresholds_it_found(gw: SandboxServer, fails: bool) -> None:
    # While it sends, young collections are rarer (they cost a fifth of the event loop's CPU with the
    # default threshold of 700); after it, success or failure, the process is as it was.
    found = gc.get_threshold()
    seen: list[tuple[int, ...]] = []

    def rows() -> Iterator[Any]:
        seen.append(gc.get_threshold())  # the producer reads while the workers send
        yield from numbers(300)
        if fails:
            raise OSError("connection reset")

    sender = MmsSender(ihuyi(gw), "1001", pid=1, send_time="", numbers_per_request=100)
    opts = CampaignOptions(concurrency=4, retry=FAST_RETRY)
    campaign = Campaign(sender, lambda: rows_from_items(rows()), lambda: Cleaner(use_params=False), opts)
    if fails:
        assert "connection reset" in str((await campaign.run()).stopped)
    else:
        assert (await campaign.run()).counts["accepted"] == 300
    raised = found if found[0] == 0 else (max(found[0], YOUNG_THRESHOLD), *found[1:])  # 0: GC is off
    assert seen == [raised]
    assert gc.get_threshold() == found


async def test_ambiguous_not_resent_unless_asked(gw: SandboxServer) -> None:
    control(gw, "POST", "/_sandbox/faults", {"reset_rate": 1.0})
    summary = await run_sms(gw, ["13800000001"], params={"code": "1"})
    assert summary.counts["ambiguous"] == 1 and summary.requests == 1
    assert len(deliveries(gw)) == 1  # the sandbox did deliver it: resending would duplicate


async def test_dry_run_sends_nothing_and_estimates(gw: SandboxServer) -> None:
    summary = await run_mms(gw, [*numbers(1050), "bad"], per_request=100, dry_run=True, requests_per_second=5)
    assert summary.dry_run and summary.estimate is not None
    assert summary.estimate["requests"] == 11 and summary.estimate["recipients"] == 1050
    assert summary.estimate["estimated_seconds"] >= 2.0
    assert summary.counts["rejected"] == 1
    assert requests_log(gw) == []


async def test_empty_audience_is_an_error(gw: SandboxServer) -> None:
    with raises(InvalidInputError, match="empty"):
        await run_mms(gw, [])


async def test_jsonl_report_and_file_source(gw: SandboxServer, tmp_path: Path) -> None:
    source = tmp_path / "audience.csv"
    source.write_text("phone,code\n13800000001,11\n13800000002,22\nbad,33\n", encoding="utf-8")
    out = io.StringIO()
    sender = SmsSender(juncdt(gw), "TPL_CODE", sign_code=None, numbers_per_request=1)
    summary = await Campaign(
        sender,
        lambda: rows_from_file(source, source.name),
        Cleaner,
        CampaignOptions(concurrency=2),
        report=ReportWriter(out, "jsonl"),
    ).run()
    assert summary.counts["accepted"] == 2 and summary.counts["rejected"] == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted(line["row"] for line in lines) == [0, 1, 2]
    assert {d["params"]["code"] for d in deliveries(gw)} == {"11", "22"}


async def test_progress_is_logged_at_a_steady_interval(
    gw: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    control(gw, "POST", "/_sandbox/faults", {"latency_ms": 20})
    caplog.set_level("INFO", logger="airflow_provider_sms.dispatch.engine")
    audience = [*numbers(300), *numbers(10)]  # 10 duplicates: every input row is counted as done
    summary = await run_sms(
        gw, audience, params={"code": "1234"}, progress_interval=0.2, concurrency=4, requests_per_second=300
    )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("Progress:", "Done:"))]
    progress = [line for line in lines if line.startswith("Progress:")]
    assert len(progress) >= 3, lines  # 300 requests at <= 300/s take over a second
    done = [int(line.split()[1].split("/")[0]) for line in progress]
    assert done == sorted(done) and done[0] < done[-1]
    assert all(" rows done, " in line and "/s" in line for line in progress)
    assert lines[-1].startswith(f"Done: {len(audience)}/{len(audience)} rows done")
    assert "accepted=300" in lines[-1] and "duplicate=10" in lines[-1]
    assert summary.counts["accepted"] == 300


def watch_sending(db: Path) -> None:
    """Make the SQLite ledger ``db`` note, at every change of a row, how many rows are ``sending``.
    Outcomes are written before marks in a transaction, so the largest count noted is the largest
    a commit ever left: what a crash at the worst moment would leave unknown."""
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            CREATE TABLE sending_peak (n INTEGER NOT NULL);
            INSERT INTO sending_peak VALUES (0);
            CREATE TRIGGER note_sending AFTER UPDATE ON sms_ledger_entries BEGIN
                UPDATE sending_peak SET n = max(n, (
                    SELECT count(*) FROM sms_ledger_entries WHERE status = 'sending'));
            END;
            """
        )


class InFlight:
    """The real sender, counting its requests in flight."""

    def __init__(self, sender: SmsSender) -> None:
        self.sender = sender
        self.now = self.most = 0

    async def send(self, batch: list[Recipient]) -> Any:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.sender.send(batch)
        finally:
            self.now -= 1

    def __getattr__(self, name: str) -> Any:  # the rest of the sender, unchanged
        return getattr(self.sender, name)


@pytest.mark.parametrize(("concurrency", "per_request"), [(8, 1), (4, 25)])
async def test_no_more_numbers_are_marked_sending_than_requests_in_flight(
    gw: SandboxServer, tmp_path: Path, concurrency: int, per_request: int
) -> None:
    """The crash bound: at any commit, at most ``concurrency x numbers_per_request`` numbers are
    ``sending`` (a batch is marked right before its request; its outcome is committed with, or before,
    its worker's next mark). Watched in the database itself, at every row change."""
    control(gw, "POST", "/_sandbox/faults", {"latency_ms": 20})
    db = tmp_path / "ledger.db"
    setup = SqlLedger(f"sqlite:///{db}", "setup", "setup", key=KEY)
    await setup.open()  # creates the tables, for the trigger
    await setup.close()
    watch_sending(db)
    ledger = SqlLedger(f"sqlite:///{db}", "bound", "owner", key=KEY)
    sender = InFlight(SmsSender(juncdt(gw), "TPL_CODE", sign_code=None, numbers_per_request=per_request))
    audience = numbers(concurrency * per_request * 12)
    summary = await Campaign(
        sender,  # type: ignore[arg-type]
        lambda: rows_from_items(audience),
        lambda: Cleaner(shared_params={"code": "1"}),
        CampaignOptions(concurrency=concurrency, retry=FAST_RETRY),
        ledger=ledger,
    ).run()
    assert summary.counts["accepted"] == len(audience) == len(deliveries(gw, "juncdt"))
    assert sender.most == concurrency  # the campaign did use its concurrency...
    with sqlite3.connect(db) as conn:
        [(peak,)] = conn.execute("SELECT n FROM sending_peak").fetchall()
    assert 0 < peak <= concurrency * per_request  # ...and never marked more than it had in flight
    assert ledger_statuses(db) == {"accepted": len(audience)}


def test_campaigns_run_on_uvloop_where_installed() -> None:
    """The hooks run a campaign with ``event_loop.run``: on uvloop, which Airflow installs on Linux."""
    from airflow_provider_sms.dispatch import event_loop

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(loop_module()).startswith("uvloop")

"""The campaign engine: stream, clean, claim, batch, send concurrently under a rate limit, record.

One producer reads and cleans the input in chunks (in a thread: files may be remote; the next chunk
while the ledger claims this one) and queues batches; workers mark them ``sending`` and send them,
``concurrency`` requests at a time. Numbers another live task of the campaign holds are waited for
at the end (bounded by the ledger's lease) and taken over if their holder stopped. A bounded queue
and one chunk read ahead keep memory flat. A fatal
answer stops new requests at once; in-flight ones finish; everything not yet sent ends as ``not_sent``.
A stop from outside (:meth:`Campaign.request_stop`: a stop signal, ``on_kill``) gives the requests in
flight ``stop_grace`` seconds to answer; those still out then end ``ambiguous``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_sms.dispatch.gc_threshold import young_gc_threshold
from airflow_provider_sms.dispatch.ledger import Ledger, LedgerError, NullLedger
from airflow_provider_sms.dispatch.outcomes import Outcome, Summary, Verdict
from airflow_provider_sms.dispatch.policy import ContactHistory, ContactPolicy
from airflow_provider_sms.dispatch.ratelimit import RateLimiter, Unlimited
from airflow_provider_sms.dispatch.recipients import Cleaner, Recipient, Refused, Row
from airflow_provider_sms.dispatch.retry import RetryPolicy
from airflow_provider_sms.dispatch.stop_signals import StopSignals
from airflow_provider_sms.errors import InvalidInputError, TransportError
from airflow_provider_sms.protocol.codes import CodeClass
from airflow_provider_sms.protocol.phones import mask

if TYPE_CHECKING:
    from airflow_provider_sms.dispatch.report import ReportWriter
    from airflow_provider_sms.dispatch.senders import BatchSender

CHUNK = 5000  # rows read (and claimed in the ledger) at a time: fewer, larger ledger transactions
MAX_OPEN_GROUPS = 1024  # partial batches waiting for recipients with the same params
SAMPLE = 3  # numbers (masked) a dry run shows of what it would send


class ReportError(RuntimeError):
    """The per-recipient report could not be written; the campaign stopped (outcomes are in the ledger)."""


class Log(Protocol):
    """What the engine needs of a logger (stdlib ``logging`` or Airflow's structlog-based task logger)."""

    def info(self, msg: str, /, *args: Any) -> Any: ...

    def warning(self, msg: str, /, *args: Any) -> Any: ...

    def error(self, msg: str, /, *args: Any) -> Any: ...

    def exception(self, msg: str, /, *args: Any) -> Any: ...


@dataclass(frozen=True)
class CampaignOptions:
    """How to send. ``preflight`` gets the number of recipients left to send before any request
    (the balance guard raises there); ``dry_run`` validates and estimates, sending nothing."""

    concurrency: int = 16
    requests_per_second: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    resend_ambiguous: bool = False
    dry_run: bool = False
    progress_interval: float = 10.0
    assumed_latency: float = 0.2
    preflight: Callable[[int], Awaitable[None]] | None = None
    stop_grace: float = 2.0  # seconds requests in flight get to answer after a stop from outside
    max_consecutive_ambiguous: int = 10  # requests in a row ending ambiguous before it stops; 0: never
    policy: ContactPolicy | None = None  # suppression, frequency cap, audience guard, quiet hours' end
    price_per_message: float | None = None  # a dry run's cost estimate

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


_RUNNING: set[Campaign] = set()  # the campaigns of this process, for stop_running


def stop_running(reason: str) -> None:
    """Stop every campaign running in this process (from any thread), as a stop signal would:
    what an operator's ``on_kill`` calls."""
    for campaign in list(_RUNNING):
        campaign.request_stop(reason)


Chunk = tuple[list[Recipient | Refused], Exception | None]


def _chunks(rows: Iterator[Recipient | Refused], size: int) -> Callable[[], Chunk]:
    """A reader of the next ``size`` items, and of the error that cut a chunk short (the items read
    before it are kept: ``list.extend`` keeps what it took from a failing iterator)."""

    def take() -> Chunk:
        chunk: list[Recipient | Refused] = []
        try:
            chunk.extend(islice(rows, size))
        except Exception as exc:
            return chunk, exc
        return chunk, None

    return take


@dataclass(slots=True)
class _Try:
    """Where one batch's sending stands, for the outcome it gets if the campaign is halted."""

    attempts: int = 0
    in_flight: bool = False
    maybe_sent: bool = False  # an earlier try may have been delivered: only a success may end otherwise


class Campaign:
    """Run one campaign: ``await Campaign(...).run()`` returns the summary; every row gets one outcome."""

    def __init__(
        self,
        sender: BatchSender,
        rows: Callable[[], Iterable[Row]],
        cleaner: Callable[[], Cleaner],
        options: CampaignOptions,
        *,
        ledger: Ledger | Callable[[], Ledger | None] | None = None,
        report: ReportWriter | None = None,
        log: Log | None = None,
        campaign: str = "",
    ) -> None:
        self.sender = sender
        self.rows = rows
        self.cleaner = cleaner
        self.options = options
        # A ledger given as a factory is opened when the campaign starts, inside ``run``, so that it
        # is always closed again, and not at all when the arguments are refused before.
        self._ledger_source = ledger
        self.ledger: Ledger = NullLedger()
        self.report = report
        self.log: Log = log or logging.getLogger(__name__)
        self.summary = Summary(gateway=sender.gateway, campaign=campaign, dry_run=options.dry_run)
        if options.policy is not None:
            self.summary.purpose = options.policy.purpose
            self.summary.policy = options.policy.details
        self.history: ContactHistory | None = None  # the ledger, when the policy needs its history
        self.paused = False  # quiet hours began: what is not sent now is deferred, not lost
        self._sample: list[str] = []  # a dry run's first recipients to send, masked
        self.stopped: str | None = None
        self.report_error: ReportError | None = None
        self.read = 0
        self.total: int | None = None
        limit = options.requests_per_second
        self.limiter: RateLimiter | Unlimited = RateLimiter(limit) if limit else Unlimited()
        self.slots = asyncio.Semaphore(options.concurrency)  # requests in flight
        self.halted = False  # the stop's grace ran out: requests still in flight are given up
        self._sending: set[asyncio.Task[Any]] = set()  # workers inside _send
        self._ambiguous_run = 0  # requests in a row that ended ambiguous (the circuit breaker)
        self._held: list[Recipient] = []  # held by another task when claimed: settled at the end
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._halt_timer: asyncio.TimerHandle | None = None
        self._pause_timer: asyncio.TimerHandle | None = None
        self.signals = StopSignals(self.request_stop)

    # ----- outcomes -------------------------------------------------------------------------------
    def _refused(self, item: Refused) -> None:
        if item.stop:
            # The input cannot be read from this row on: it and every row after it are not sent. The
            # rows before it were good and still go out (no _stop); the summary says why it ended.
            outcome, code = Outcome.NOT_SENT, "stopped"
            if self.summary.stopped is None:
                self.summary.stopped = item.reason
                self.log.error("The recipients stop being readable; no later row is sent: %s", item.reason)
        else:
            outcome = Outcome.DUPLICATE if item.duplicate else Outcome.REJECTED
            code = "" if item.duplicate else "invalid_input"
        self.summary.add(outcome, 1, code, "" if item.duplicate else item.reason)
        if self.report:
            try:
                self.report.write(item.index, item.masked, outcome.value, code, item.reason, masked=True)
            except Exception as exc:
                self._report_failed(exc)

    def _finish(self, batch: list[Recipient], verdict: Verdict, *, record: bool = True) -> None:
        if record:  # the ledger keeps not_sent for deferred numbers: the resumed task claims them again
            self.ledger.record([r.phone for r in batch], verdict)
        if self.paused and verdict.outcome is Outcome.NOT_SENT:
            verdict = Verdict(Outcome.DEFERRED, "quiet_hours", "quiet hours began before it was sent")
        self.summary.add(verdict.outcome, len(batch), verdict.code, verdict.message)
        self.summary.add_id(verdict.gateway_id)
        if self.report:
            try:
                for r in batch:
                    self.report.write(
                        r.index,
                        r.phone,
                        verdict.outcome.value,
                        verdict.code,
                        verdict.message,
                        verdict.gateway_id,
                        verdict.attempts,
                    )
            except Exception as exc:
                self._report_failed(exc)

    def _report_failed(self, exc: Exception) -> None:
        """A report that cannot be written (full disk, storage error) stops the campaign; the
        outcomes still go to the summary and the ledger, and ``run`` raises once everyone has one."""
        self.report = None
        self.report_error = ReportError(f"the report could not be written: {type(exc).__name__}: {exc}")
        self._stop(str(self.report_error))

    def _stop(self, reason: str, *, retryable: bool = False) -> None:
        """No new request starts from now on. ``retryable``: a later try of the task may do better
        (a stop signal, a read failure), as opposed to a fatal answer or bad input."""
        if self.stopped is None:
            self.stopped = reason
            self.summary.stopped = reason
            self.summary.stop_retryable = retryable
            self.log.error("Stopping the campaign, no new request will start: %s", reason)

    def request_stop(self, reason: str) -> None:
        """Stop from outside the campaign (a stop signal, ``on_kill``), from the loop's thread or any
        other: no new request starts; after ``stop_grace`` seconds the requests still in flight are
        given up (``ambiguous``), so the campaign ends within a bounded time."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() != self._thread:
            loop.call_soon_threadsafe(self.request_stop, reason)
            return
        self._stop(reason, retryable=True)
        if self._halt_timer is None:
            self._halt_timer = loop.call_later(self.options.stop_grace, self._halt)

    def pause(self) -> None:
        """Quiet hours begin: no new request starts, the requests in flight finish (no halt), and every
        recipient not sent yet ends ``deferred`` (the ledger leaves them to the task's resumption)."""
        if self.stopped is not None:
            return
        self.paused = True
        self.summary.paused = True
        self._stop("quiet hours began; the recipients not sent yet are deferred", retryable=True)

    def _halt(self) -> None:
        """The grace is over: interrupt the workers still inside a request or waiting to retry one."""
        if self.halted:
            return
        self.halted = True
        for task in list(self._sending):
            task.cancel()

    def _breaker(self, verdict: Verdict) -> None:
        """Count requests in a row that ended ambiguous; too many means the gateway or the network
        is swallowing requests, and going on would only make more recipients ambiguous."""
        if verdict.attempts == 0:  # no request of its own (stopped before it left)
            return
        if verdict.outcome is not Outcome.AMBIGUOUS:
            self._ambiguous_run = 0
            return
        self._ambiguous_run += 1
        limit = self.options.max_consecutive_ambiguous
        if limit and self._ambiguous_run >= limit:
            self._stop(
                f"{self._ambiguous_run} requests in a row ended ambiguous (last: {verdict.code} "
                f"{verdict.message}); stopped so as not to leave more recipients in doubt",
                retryable=True,
            )

    # ----- producer -------------------------------------------------------------------------------
    async def _produce(self, queue: asyncio.Queue[list[Recipient] | None]) -> None:
        source = self.rows()
        self.total = len(source) if isinstance(source, Sized) else None
        stream = self.cleaner().clean(source)
        take = _chunks(stream, CHUNK)
        groups: dict[Hashable, list[Recipient]] = {}
        # The next chunk is read (on a thread) while this one is claimed (a ledger round trip): done
        # one after the other, the two together were the limit of a 100-number MMS campaign.
        ahead = asyncio.ensure_future(asyncio.to_thread(take))
        try:
            while True:
                chunk, error = await ahead
                if error is not None and self.read + len(chunk) == 0 and isinstance(error, InvalidInputError):
                    raise error  # refused before anything was read or sent: a plain bad-input error
                if not chunk and error is None:
                    self.total = self.read
                    break
                if error is None:
                    ahead = asyncio.ensure_future(asyncio.to_thread(take))
                await self._queue_chunk(chunk, groups, queue)
                if error is not None:  # e.g. storage gone: everyone read so far keeps an outcome
                    self._stop(
                        f"reading recipients failed after row {self.read}: {type(error).__name__}: {error}",
                        retryable=not isinstance(error, InvalidInputError),
                    )
                    break
                if self.halted:  # the stop's grace is over: the rest of the input is left unread
                    if self.total is None or self.read < self.total:
                        self._unread()
                    break
        finally:
            ahead.cancel()
        await self._settle_held(groups, queue)
        for group in groups.values():  # after a stop, the workers finish them as not sent
            await queue.put(group)

    async def _settle_held(
        self, groups: dict[Hashable, list[Recipient]], queue: asyncio.Queue[list[Recipient] | None]
    ) -> None:
        """Numbers another task held when they were claimed: no task may end with them in limbo. Wait
        (bounded by the ledger's lease) and claim them again: those whose holder stopped are taken
        over and sent, those its holder finished get that outcome, and those a task still sends (it
        renewed its lease meanwhile) end ``held``."""
        held, self._held = self._held, []
        if not held:
            return
        self.log.info(
            "%d recipient(s) are held by another task of this campaign: waiting for them", len(held)
        )
        since = time.time()
        poll = max(0.5, self.ledger.lease / 6)
        deadline = time.monotonic() + self.ledger.lease + poll
        while held and not self.stopped and time.monotonic() < deadline:
            await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))
            verdicts = await self.ledger.claim([r.phone for r in held], alive_since=since)
            ours, still = [], []
            for recipient in held:
                verdict = verdicts.get(recipient.phone)
                if verdict is None:
                    ours.append(recipient)
                elif verdict.outcome is Outcome.HELD and verdict.code != "live":
                    still.append(recipient)
                else:
                    self._finish([recipient], verdict, record=False)
            await self._queue_ours(ours, groups, queue)
            held = still
        why = "still held by another task of this campaign" + (
            f" when it stopped ({self.stopped})" if self.stopped else ""
        )
        self._finish(held, Verdict(Outcome.HELD, "held", why), record=False)

    def _unread(self) -> None:
        self.total = None
        note = f"; rows after row {self.read} were not read (none of them was sent)"
        self.summary.stopped = (self.summary.stopped or "") + note
        self.log.warning("The campaign stopped before the end of its input%s", note)

    async def _queue_chunk(
        self,
        chunk: list[Recipient | Refused],
        groups: dict[Hashable, list[Recipient]],
        queue: asyncio.Queue[list[Recipient] | None],
    ) -> None:
        """Refuse, claim and batch one chunk; full batches are queued, partial ones stay in ``groups``."""
        self.read += len(chunk)
        fresh: list[Recipient] = []
        for item in chunk:
            if isinstance(item, Refused):
                self._refused(item)
            else:
                fresh.append(item)
        if self.stopped:
            self._finish(fresh, Verdict(Outcome.NOT_SENT, "stopped", self.stopped), record=False)
            return
        fresh = await self._screen(fresh)
        try:
            prior = await self.ledger.claim([r.phone for r in fresh]) if fresh else {}
        except Exception as exc:
            self._stop(f"the ledger could not claim recipients: {exc}")
            self._finish(fresh, Verdict(Outcome.NOT_SENT, "stopped", self.stopped or ""), record=False)
            raise
        ours = []
        for recipient in fresh:
            verdict = prior.get(recipient.phone)
            if verdict is None:
                ours.append(recipient)
            elif verdict.outcome is Outcome.HELD:
                self._held.append(recipient)  # another task has it: see _settle_held
            else:
                self._finish([recipient], verdict, record=False)
        await self._queue_ours(ours, groups, queue)

    async def _screen(self, fresh: list[Recipient]) -> list[Recipient]:
        """Apply the contact policy to clean recipients before they are claimed: those on a suppression
        list end ``suppressed``, those over the frequency cap ``capped`` (one query per chunk each)."""
        policy = self.options.policy
        if policy is None or not fresh:
            return fresh
        listed: set[str] = set()
        if policy.suppression is not None:
            listed = {r.phone for r in fresh if r.phone in policy.suppression}
        if policy.suppression_table and self.history is not None:
            listed |= await self.history.suppressions.contains(
                [r.phone for r in fresh if r.phone not in listed]
            )
        if listed:
            out = [r for r in fresh if r.phone in listed]
            fresh = [r for r in fresh if r.phone not in listed]
            listed_verdict = Verdict(Outcome.SUPPRESSED, "suppressed", "on a suppression list")
            self._finish(out, listed_verdict, record=False)
        if policy.capped and self.history is not None and fresh:
            limit = policy.max_per_number or 0
            since = time.time() - policy.per_seconds
            seen = await self.history.accepted_since([r.phone for r in fresh], since, other_campaigns=True)
            over = [r for r in fresh if seen.get(r.phone, 0) >= limit]
            if over:
                fresh = [r for r in fresh if seen.get(r.phone, 0) < limit]
                why = f"already {limit} message(s) accepted in the last {policy.per} (max_per_number)"
                self._finish(over, Verdict(Outcome.CAPPED, "frequency_cap", why), record=False)
        return fresh

    async def _queue_ours(
        self,
        recipients: list[Recipient],
        groups: dict[Hashable, list[Recipient]],
        queue: asyncio.Queue[list[Recipient] | None],
    ) -> None:
        """Batch claimed recipients: full batches are queued, partial ones stay in ``groups``."""
        size = self.sender.numbers_per_request
        for recipient in recipients:
            key = self.sender.group_key(recipient)
            group = groups.setdefault(key, [])
            group.append(recipient)
            if len(group) >= size:
                del groups[key]
                await queue.put(group)
            elif len(groups) > MAX_OPEN_GROUPS:
                oldest = next(iter(groups))
                await queue.put(groups.pop(oldest))

    # ----- workers --------------------------------------------------------------------------------
    async def _send(self, batch: list[Recipient]) -> Verdict:
        task = asyncio.current_task()
        assert task is not None  # a worker task runs this
        self._sending.add(task)
        state = _Try()
        try:
            return await self._try(batch, state)
        except asyncio.CancelledError:
            if not self.halted:
                raise
            # The stop's grace ran out: give this batch its outcome, and let the worker go on (it
            # only finishes the batches left in the queue as not sent).
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None:
                uncancel()
            if state.in_flight or state.maybe_sent:
                return Verdict(
                    Outcome.AMBIGUOUS,
                    "stopped",
                    f"in flight when the campaign stopped ({self.stopped}); it may have been delivered",
                    attempts=state.attempts,
                )
            return Verdict(Outcome.NOT_SENT, "stopped", self.stopped or "", attempts=state.attempts)
        finally:
            self._sending.discard(task)

    async def _try(self, batch: list[Recipient], state: _Try) -> Verdict:
        """Send ``batch`` until it has an outcome: retried while the faults are transient."""
        policy = self.options.retry
        started = time.monotonic()
        phones = [r.phone for r in batch]
        last = ("", "")
        while True:
            if self.stopped:
                if state.maybe_sent:
                    return Verdict(Outcome.AMBIGUOUS, *last, attempts=state.attempts)
                return Verdict(Outcome.NOT_SENT, "stopped", self.stopped, attempts=state.attempts)
            try:
                await self.ledger.mark_sending(phones)
            except LedgerError as exc:  # nothing may leave without its mark: stop here
                self._stop(f"the ledger could not mark a request as sending: {exc}")
                return self._unsent(Outcome.NOT_SENT, ("ledger", str(exc)), state)
            retry_after = 0.0  # what the gateway asked us to wait (Retry-After), at least
            try:
                # A connection slot: a marked batch waits here, never in the pool's queue (whose wait
                # would count against the request's timeout).
                async with self.slots:
                    # The rate slot is taken last, so the request leaves right at its slot.
                    await self.limiter.acquire()
                    if self.stopped:  # re-check: no await between this check and the request
                        continue  # the loop's first check returns the stopped verdict
                    state.attempts += 1
                    self.summary.requests += 1
                    state.in_flight = True  # until it answers: a halt now leaves it ambiguous
                    reply = await self.sender.send(batch)
                    state.in_flight = False
            except InvalidInputError as exc:  # refused while building the request: nothing went out
                state.in_flight = False
                self._stop(f"a request could not be built: {exc}")
                return self._unsent(Outcome.FAILED, ("invalid_input", str(exc)), state)
            except TransportError as exc:
                state.in_flight = False
                last = ("transport", str(exc))
                state.maybe_sent = state.maybe_sent or exc.ambiguous
                retry_after = exc.retry_after or 0.0
                if exc.ambiguous and not self.options.resend_ambiguous:
                    return Verdict(Outcome.AMBIGUOUS, *last, attempts=state.attempts)
                if not exc.retryable:
                    self._stop(str(exc))
                    return self._unsent(Outcome.FAILED, last, state)
            else:
                verdict_class = self.sender.classify(reply, batch)
                last = (reply.code, reply.message)
                if verdict_class is CodeClass.SUCCESS:
                    return Verdict(Outcome.ACCEPTED, *last, self.sender.gateway_id(reply), state.attempts)
                if verdict_class is CodeClass.BAD_INPUT:
                    return self._unsent(Outcome.REJECTED, last, state)
                if verdict_class is CodeClass.FATAL:
                    self._stop(reply.describe())
                    return self._unsent(Outcome.FAILED, last, state)
                if verdict_class is CodeClass.UNKNOWN:
                    return self._unsent(Outcome.FAILED, last, state)
            delay = max(policy.delay(state.attempts), retry_after)  # past the budget below: failed
            spent = time.monotonic() - started
            if state.attempts >= policy.max_attempts or spent + delay > policy.max_elapsed:
                return self._unsent(Outcome.FAILED, last, state)
            if retry_after and self.limiter.hold(retry_after):  # asked of the campaign, not this request
                self.log.warning("Holding every request for %.0f s: %s", retry_after, last[1])
            await asyncio.sleep(delay)

    @staticmethod
    def _unsent(outcome: Outcome, last: tuple[str, str], state: _Try) -> Verdict:
        """The batch's outcome when its last try was not a success: ``outcome``, unless an earlier try
        may have been delivered (``resend_ambiguous``): then ambiguous, so no later run resends it."""
        if state.maybe_sent:
            return Verdict(
                Outcome.AMBIGUOUS,
                last[0],
                f"{last[1]} (an earlier try may have been delivered)",
                "",
                state.attempts,
            )
        return Verdict(outcome, *last, attempts=state.attempts)

    async def _work(self, queue: asyncio.Queue[list[Recipient] | None]) -> None:
        while (batch := await queue.get()) is not None:
            self.summary.batches += 1  # as queued: a batch split in halves still counts once
            await self._deliver(batch)

    async def _deliver(self, batch: list[Recipient]) -> None:
        """Send ``batch`` and record its outcome; a multi-number request the gateway refused as bad
        input is sent again in halves, so that only the bad numbers end ``rejected``."""
        if self.stopped:
            self._finish(batch, Verdict(Outcome.NOT_SENT, "stopped", self.stopped))
            return
        try:
            verdict = await self._send(batch)
        except Exception as exc:  # a bug must not lose recipients: record, stop, report
            self.log.exception("Unexpected error while sending a batch")
            self._stop(f"internal error: {type(exc).__name__}")
            verdict = Verdict(Outcome.AMBIGUOUS, "internal_error", type(exc).__name__)
        if verdict.outcome is Outcome.REJECTED and len(batch) > 1 and verdict.code != "invalid_input":
            half = len(batch) // 2
            await self._deliver(batch[:half])
            await self._deliver(batch[half:])
            return
        self._breaker(verdict)
        try:
            self._finish(batch, verdict)
        except Exception as exc:  # nor stop this worker: the producer would wait for it forever
            self.log.exception("Unexpected error while recording an outcome")
            self._stop(f"internal error: {type(exc).__name__}")

    # ----- progress -------------------------------------------------------------------------------
    def progress_line(self) -> str:
        s = self.summary
        done = s.total  # input rows with an outcome, duplicates included: comparable with rows read
        elapsed = max(time.monotonic() - s.started, 1e-9)
        rate = done / elapsed
        total = self.total
        of = f"{done}/{total}" if total is not None else f"{done}/{self.read}+"
        eta = f", ETA {max(0.0, (total - done) / rate):.0f}s" if total is not None and rate > 0 else ""
        counts = ", ".join(f"{k}={v}" for k, v in s.counts.items() if v)
        return f"{of} rows done, {rate:.0f}/s{eta}; {counts or 'nothing yet'}"

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(self.options.progress_interval)
            self.log.info("Progress: %s", self.progress_line())

    # ----- entry points ---------------------------------------------------------------------------
    async def _count(self) -> tuple[int, int]:
        """Clean and screen the whole input without sending: (recipients to send, requests it takes)."""
        size = self.sender.numbers_per_request
        groups: dict[Hashable, int] = {}
        unique = batches = 0
        take = _chunks(self.cleaner().clean(self.rows()), CHUNK)
        while True:
            chunk, error = await asyncio.to_thread(take)
            if error is not None:
                raise error
            if not chunk:
                return unique, batches + len(groups)
            fresh = []
            for item in chunk:
                if isinstance(item, Refused):
                    self._refused(item)
                else:
                    fresh.append(item)
            for item in await self._screen(fresh):
                unique += 1
                if len(self._sample) < SAMPLE:
                    self._sample.append(mask(item.phone))
                key = self.sender.group_key(item)
                groups[key] = groups.get(key, 0) + 1
                if groups[key] >= size:
                    del groups[key]
                    batches += 1

    async def _audience_size(self) -> int:
        """Unique valid recipients of the input (read once more, before anything is sent)."""

        def count() -> int:
            return sum(1 for item in self.cleaner().clean(self.rows()) if isinstance(item, Recipient))

        return await asyncio.to_thread(count)

    async def _still_to_send(self) -> int:
        """Unique valid recipients of this audience that the ledger does not show as sent, or maybe sent
        (for the balance guard). Counted chunk by chunk: other audiences sharing the campaign key (the
        other parts of a mapped campaign) do not count."""
        take = _chunks(self.cleaner().clean(self.rows()), CHUNK)
        left = 0
        while True:
            chunk, error = await asyncio.to_thread(take)
            if error is not None:
                raise error  # nothing was sent yet: the guard cannot count, so the task fails here
            if not chunk:
                return left
            phones = [item.phone for item in chunk if isinstance(item, Recipient)]
            if phones:
                left += len(phones) - await self.ledger.done_count(phones)

    async def run(self) -> Summary:
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        self.signals.install()
        _RUNNING.add(self)
        try:
            source = self._ledger_source
            self.ledger = (source() if callable(source) else source) or NullLedger()
            await self.ledger.open()
            await self._check_policy()
            if self.options.dry_run:
                return await self._dry_run()
            if self.options.preflight is not None:
                await self.options.preflight(await self._still_to_send())
            await self.sender.warm_up()
            with young_gc_threshold():
                await self._dispatch()
            if self.report_error is not None:
                raise self.report_error
            if self.summary.total == 0:
                raise InvalidInputError("no recipients: the audience is empty")
            self.log.info("Done: %s", self.progress_line())
            return self.summary
        finally:
            _RUNNING.discard(self)
            if self._halt_timer is not None:
                self._halt_timer.cancel()
            if self._pause_timer is not None:
                self._pause_timer.cancel()
            self.summary.elapsed = time.monotonic() - self.summary.started
            try:
                await self.ledger.close()
                await self.sender.aclose()
            finally:
                self.signals.restore()

    async def _check_policy(self) -> None:
        """Before anything is sent: the audience guard, and the ledger the policy needs; then arm the
        end of the quiet-hours window."""
        policy = self.options.policy
        if policy is None:
            return
        if policy.needs_history:
            if not isinstance(self.ledger, ContactHistory):
                if policy.capped:
                    raise InvalidInputError("max_per_number needs the ledger's contact history (use_ledger)")
            else:
                self.history = self.ledger
        if policy.guard.active:
            policy.guard.check(await self._audience_size())
        if policy.stop_at is not None and not self.options.dry_run:
            loop = asyncio.get_running_loop()
            self._pause_timer = loop.call_later(max(0.0, policy.stop_at - time.time()), self.pause)

    async def _dispatch(self) -> None:
        """The producer and the workers, until every row has its outcome (or an error stops them)."""
        queue: asyncio.Queue[list[Recipient] | None] = asyncio.Queue(maxsize=self.options.concurrency)
        workers = [asyncio.create_task(self._work(queue)) for _ in range(self.options.concurrency)]
        progress = asyncio.create_task(self._progress())
        try:
            try:
                await self._produce(queue)
            except BaseException as exc:
                self._stop(f"internal error while reading recipients: {type(exc).__name__}: {exc}")
                raise
            finally:
                for _ in workers:
                    await queue.put(None)
                await asyncio.gather(*workers)
        finally:
            progress.cancel()
            for worker in workers:
                worker.cancel()

    async def _dry_run(self) -> Summary:
        unique, requests = await self._count()
        if self.summary.total + unique == 0:
            raise InvalidInputError("no recipients: the audience is empty")
        o = self.options
        latency_bound = requests * o.assumed_latency / o.concurrency
        seconds = max(latency_bound, requests / o.requests_per_second if o.requests_per_second else 0.0)
        self.summary.add(Outcome.NOT_SENT, unique, "dry_run", "dry run: nothing sent")
        self.summary.batches = requests
        self.summary.estimate = {
            "recipients": unique,
            "requests": requests,
            "numbers_per_request": self.sender.numbers_per_request,
            "concurrency": o.concurrency,
            "requests_per_second": o.requests_per_second,
            "assumed_latency_s": o.assumed_latency,
            "estimated_seconds": round(seconds, 1),
            "sample_masked": self._sample,  # the first recipients it would text, for a person to check
        }
        if o.price_per_message is not None:
            self.summary.estimate["price_per_message"] = o.price_per_message
            self.summary.estimate["estimated_cost"] = round(unique * o.price_per_message, 2)
        self.log.info(
            "Dry run: %d recipients in %d requests, about %.0fs; nothing was sent", unique, requests, seconds
        )
        return self.summary

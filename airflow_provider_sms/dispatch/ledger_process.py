"""The SQL ledger with its database work in a child process, so the sending event loop keeps its core.

SQLAlchemy and sqlite3 hold the GIL for most of a ledger's work: on a thread of the task's process
they slow the event loop that sends (README, Performance). Here a child interpreter owns the
``LedgerStore``; the event loop only writes small pickled messages to the child's stdin and reads its
acknowledgements from its stdout, both non-blocking, with no thread on this side.

The promise is ``SqlLedger``'s. The child handles messages in the order they were sent and commits
everything that arrived while it was busy as one group: ``mark_sending`` returns once its numbers, and
every outcome recorded before them, are committed. A child that dies fails its waiters and every call
after it with ``LedgerError``. A parent that dies leaves the child reading end-of-file: it commits
what it has read and exits. The child ignores SIGINT and SIGTERM (Airflow signals the whole process
group when it stops a task): it ends when this side closes the pipe, after the last outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_sms.dispatch.journal import JournalError
from airflow_provider_sms.dispatch.ledger import LedgerError
from airflow_provider_sms.dispatch.sql_ledger import LedgerFrontEnd, LedgerStore, _Values, outcome_values

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_sms.dispatch.outcomes import Verdict
    from airflow_provider_sms.dispatch.recipients import Recipient

_SIZE = struct.Struct("!I")  # every message is framed by its length
# A read allocates its whole size first: 1 MiB reads cost the sending process a page fault every two
# requests (the heap grew and shrank around each), 20 µs of CPU per request in all; messages are a
# few hundred bytes, a chunk's claim about 70 KB (two reads).
READ_SIZE = 1 << 16
START_TIMEOUT_S = 120  # the child imports SQLAlchemy and opens the database (a busy SQLite waits 30 s)
STOP_TIMEOUT_S = 60
# The child imports this module from the directory this copy of the package was loaded from.
_CHILD = f"import sys; sys.path.insert(0, sys.argv[1]); from {__name__} import serve; serve()"


class LedgerProcessUnavailable(LedgerError):
    """No child process could be started here: ``SqlLedger`` (a thread) keeps the same promise."""


def _frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _SIZE.pack(len(data)) + data


def _write_all(fd: int, message: object) -> None:
    """Write one framed message to a blocking pipe (the child's replies, the parent's handshake)."""
    data = memoryview(_frame(message))
    while data:
        data = data[os.write(fd, data) :]


def _unframe(buffer: bytearray) -> list[Any]:
    """The complete messages at the start of ``buffer``, removed from it."""
    messages = []
    start, end = 0, len(buffer)
    view = memoryview(buffer)
    while end - start >= _SIZE.size:
        (size,) = _SIZE.unpack_from(buffer, start)
        if end - start - _SIZE.size < size:
            break
        start += _SIZE.size
        # Only this module's two ends write to these private pipes: nothing untrusted is unpickled.
        messages.append(pickle.loads(view[start : start + size]))  # noqa: S301
        start += size
    view.release()
    del buffer[:start]
    return messages


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"  # engines hide parameters: no phone number in it


# ----- the child ----------------------------------------------------------------------------------
def serve() -> None:
    """The child's main: read messages from stdin, answer on the original stdout (now private)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _no_wakeup_preemption()
    out = os.dup(1)
    os.dup2(2, 1)  # a stray print must not corrupt the replies
    _Child(0, out).run()
    # Everything is committed and the database closed: skip the interpreter's teardown of SQLAlchemy
    # and the rest (about 0.1 s that the task would wait for at every campaign's end).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _no_wakeup_preemption() -> None:
    """Run the child as SCHED_BATCH (Linux): the same share of the CPU, but a message it wakes up for
    does not preempt the sending event loop that wrote it (a pipe write asks the kernel to run the
    reader on the writer's core). The sending process then used 12 to 35 µs less CPU per request
    (README, Performance)."""
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None:  # pragma: no cover - not Linux
        return
    with contextlib.suppress(OSError):  # a sandbox that forbids it: the default policy works too
        os.sched_setscheduler(0, batch, os.sched_param(0))


class _Child:
    def __init__(self, inp: int, out: int) -> None:
        self.inp, self.out = inp, out
        self.buffer = bytearray()
        self.pending: dict[str, _Values] = {}  # what the next group writes
        self.waiting: list[int] = []  # the marks in that group
        self.store: LedgerStore | None = None

    def send(self, *message: object) -> None:
        _write_all(self.out, message)

    def messages(self) -> list[Any] | None:
        """What arrived since the last read (waiting for at least one byte); None at end-of-file."""
        while True:
            data = os.read(self.inp, READ_SIZE)
            if not data:
                return None
            self.buffer += data
            if messages := _unframe(self.buffer):
                return messages

    def run(self) -> None:
        first = self.messages()
        if first is None:
            return
        _, ident, (url, campaign, owner, resend_ambiguous, table, token, journal_dir) = first[0]
        try:
            self.store = LedgerStore(
                url, campaign, owner, resend_ambiguous=resend_ambiguous, table=table, token=token
            )
            self.store.create_table()
            recovered = self.store.recover(journal_dir) if journal_dir else {}
        except Exception as exc:
            self.send("fail", [ident], _describe(exc))
            return
        self.send("done", [ident], recovered, 0)
        try:
            while (messages := self.messages()) is not None:
                if self.handle(messages):
                    return
                self.commit()
            self.commit()  # the parent is gone: keep what it recorded
        finally:
            self.store.dispose()

    def handle(self, messages: list[Any]) -> bool:
        """Buffer writes, run jobs in order (after committing what came before); True at close."""
        assert self.store is not None
        for kind, ident, payload in messages:
            if kind == "mark":
                self.pending.update(dict.fromkeys(payload, self.store.mark_values))
                self.waiting.append(ident)
            elif kind == "record":
                phones, values = payload
                self.pending.update(dict.fromkeys(phones, values))
            else:
                self.commit()
                try:
                    if kind == "claim":
                        result: Any = self.store.claim(payload)
                    elif kind == "count":
                        result = self.store.done_count(payload)
                    else:  # close
                        error = self.store.error
                        result = (self.store.lost, _describe(error) if error else "")
                except Exception as exc:
                    self.send("fail", [ident], _describe(exc))
                else:
                    self.send("done", [ident], result, self.store.groups)
                if kind == "close":
                    return True
        return False

    def commit(self) -> None:
        assert self.store is not None
        pending, waiting = self.pending, self.waiting
        if not pending and not waiting:
            return
        self.pending, self.waiting = {}, []
        try:
            if pending:
                self.store.write(pending)
        except Exception as exc:  # the store counts the outcomes lost, close reports them
            self.send("fail", waiting, _describe(exc))
        else:
            self.send("done", waiting, None, self.store.groups)


# ----- the task's side ----------------------------------------------------------------------------
class ProcessLedger(LedgerFrontEnd):
    """The ``Ledger`` on a SQLAlchemy URL, like ``SqlLedger``, its database work in a child process.

    Starting it costs a second interpreter (about a third of a second); the database URL goes to the
    child over its stdin, never on a command line. The send journal (``journal_dir``, see
    ``LedgerFrontEnd``) is written by this process: the pipe to the child dies with the task's
    processes, the journal's lines do not. Use it from one event loop at a time.
    """

    def __init__(
        self,
        url: str,
        campaign: str,
        owner: str,
        *,
        resend_ambiguous: bool = False,
        table: str = "sms_ledger",
        journal_dir: str | None = None,
    ) -> None:
        super().__init__(url, campaign, owner, journal_dir)
        self.flushes = 0  # group-commit transactions written so far
        self._replies = bytearray()
        self._unsent = bytearray()  # messages not yet written to the child
        self._writer = False  # the loop watches the pipe for room
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broken = ""  # why the child cannot be used any more
        self._lost = 0  # outcomes recorded after that
        self._closed = False
        package_root = str(Path(__file__).resolve().parents[2])
        try:
            self._proc = subprocess.Popen(  # noqa: S603 (this interpreter, this module: no user input)
                [sys.executable, "-c", _CHILD, package_root], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        except OSError as exc:
            raise LedgerProcessUnavailable(f"no ledger process could be started: {exc}") from exc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._to, self._from = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        try:
            arguments = (url, campaign, owner, resend_ambiguous, table, self.token, journal_dir)
            self.recovered = self._open(arguments)
        except BaseException:
            self._end()
            raise
        os.set_blocking(self._to, False)
        os.set_blocking(self._from, False)
        self._start_journal()

    def _open(self, arguments: tuple[object, ...]) -> dict[str, int]:
        """Blocking handshake: the child has the database open, the table created and the journals of
        earlier tries settled (it returns what they settled), or says why not."""
        _write_all(self._to, ("open", 0, arguments))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (replies := _unframe(self._replies)):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                why = f"the ledger process for {self._display} did not start in {START_TIMEOUT_S} s"
                raise LedgerProcessUnavailable(why)
            chunk = os.read(self._from, READ_SIZE)
            if not chunk:
                code = self._proc.wait()
                why = f"the ledger process for {self._display} ended at start (exit code {code})"
                raise LedgerProcessUnavailable(why)
            self._replies += chunk
        status, _, *rest = replies[0]
        if status == "fail":
            raise LedgerError(f"the ledger could not open {self._display}: {rest[0]}")
        return dict(rest[0])

    # ----- messages -------------------------------------------------------------------------------
    def _attach(self) -> asyncio.AbstractEventLoop:
        """Read replies on the running loop (moving over from a previous loop, if any)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._waiters:
                raise LedgerError(f"{self!r} is waiting for replies on another event loop")
            self._detach()
            loop.add_reader(self._from, self._readable)
            if self._unsent:
                loop.call_soon(self._write)
            self._loop = loop
        return loop

    def _detach(self) -> None:
        """Stop watching the pipes on the loop they were watched on (if it still runs)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._from)
            self._loop.remove_writer(self._to)
        self._writer = False

    def _check_open(self) -> None:
        if self._broken:
            raise LedgerError(self._broken)
        if self._closed:
            raise LedgerError(f"{self!r} is closed")

    def _send(self, kind: str, ident: int, payload: object) -> asyncio.AbstractEventLoop:
        """Queue a message: what the loop queues in one turn goes out in one write, at the turn's end.
        Returns the loop it goes out on."""
        loop = self._attach()
        if not self._unsent:
            loop.call_soon(self._write)
        self._unsent += _frame((kind, ident, payload))
        return loop

    async def _ask(self, kind: str, payload: object) -> Any:
        """Send one message and wait for its reply."""
        self._check_open()
        self._next += 1
        ident = self._next
        # Queued, not yet written (that happens at the end of this loop turn): no reply can come
        # before its future is registered.
        future = self._send(kind, ident, payload).create_future()
        self._waiters[ident] = future
        try:
            return await future
        finally:
            self._waiters.pop(ident, None)

    def _write(self) -> None:
        """Write what is queued; what the pipe has no room for waits until it has (the child reads
        as fast as it can)."""
        if not self._unsent or self._broken:
            return
        try:
            self._journal_flush()  # the marks' lines first: the child may commit a mark once it reads it
        except JournalError as exc:
            self._fail(str(exc))
            return
        try:
            written = os.write(self._to, self._unsent)
        except BlockingIOError:
            written = 0
        except OSError:  # the child is gone: every waiter gets the error
            self._lose()
            return
        del self._unsent[:written]
        if self._loop is None or bool(self._unsent) == self._writer:
            return
        if self._unsent:
            self._loop.add_writer(self._to, self._write)
        else:
            self._loop.remove_writer(self._to)
        self._writer = bool(self._unsent)

    def _readable(self) -> None:
        try:
            data = os.read(self._from, READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._lose()
            return
        self._replies += data
        for status, idents, *rest in _unframe(self._replies):
            if status == "done":
                result, self.flushes = rest
            for ident in idents:
                future = self._waiters.get(ident)
                if future is None or future.done():  # its waiter was cancelled
                    continue
                if status == "done":
                    future.set_result(result)
                else:
                    future.set_exception(LedgerError(f"{self!r}: {rest[0]}"))

    def _lose(self) -> None:
        """The child is gone (its pipe closed): every waiter and every later call gets an error."""
        try:
            code = self._proc.wait(1)
        except subprocess.TimeoutExpired:
            code = None
        self._fail(f"the ledger process for {self._display} ended unexpectedly (exit code {code})")

    def _fail(self, why: str) -> None:
        """Nothing more goes to the child: every waiter and every later call gets ``why``."""
        self._broken = self._broken or why
        self._detach()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(LedgerError(why))

    def _end(self) -> None:
        """Close the pipes and wait for the child (it commits what it read first), or kill it."""
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        try:
            self._proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    # ----- the Ledger protocol --------------------------------------------------------------------
    async def claim(self, recipients: Sequence[Recipient]) -> dict[str, Verdict]:
        """Claim ``recipients`` in one transaction; verdicts for the numbers that are not ours to send."""
        phones = sorted({r.phone for r in recipients})
        if not phones:
            self._check_open()
            return {}
        return dict(await self._ask("claim", phones))

    async def mark_sending(self, phones: Sequence[str]) -> None:
        """Return once ``phones`` are committed as ``sending``, with every outcome recorded before."""
        self._check_open()
        if phones:
            position = self._journal_mark(phones)
            await self._ask("mark", list(phones))
            self._journal_committed(position)

    def record(self, phones: Sequence[str], verdict: Verdict) -> None:
        """Send the outcome to the child, which commits it with its next group (at once when idle).
        Without a child it is counted as lost, for ``close`` to report: the engine goes on recording."""
        if self._closed:
            raise LedgerError(f"{self!r} is closed")
        values = outcome_values(verdict)
        self._journal_outcome(phones, values)  # the next try reads it there if the child cannot commit it
        if self._broken:
            self._lost += len(phones)
            return
        self._send("record", 0, (list(phones), values))

    async def done_count(self, phones: Sequence[str] | None = None) -> int:
        """Numbers of this campaign (of ``phones`` when given) accepted, or possibly delivered."""
        return int(await self._ask("count", None if phones is None else list(phones)))

    async def close(self) -> None:
        """Write everything sent, then end the child; idempotent. The send journal is removed once every
        outcome is committed, kept for the next try otherwise."""
        if self._closed:
            return
        clean = False
        try:
            lost, error = (0, "") if self._broken else await self._ask("close", None)
            clean = not (self._broken or lost)
        finally:
            self._closed = True
            self._detach()
            await asyncio.to_thread(self._end)
            self._end_journal(clean=clean)
        if self._broken:
            lost = f"{self._lost} outcomes not written, and those sent since its last commit may be lost"
            raise LedgerError(f"{self._broken}: {lost}")
        if lost:
            raise LedgerError(f"{lost} outcomes could not be written to {self!r}: {error}")


if TYPE_CHECKING:
    from airflow_provider_sms.dispatch.ledger import Ledger

    def _is_a_ledger(ledger: ProcessLedger) -> Ledger:  # mypy checks ProcessLedger against the protocol
        return ledger

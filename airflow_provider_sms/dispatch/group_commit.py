"""One thread for all of a ledger's database work: jobs in order, and group commits of buffered writes.

The event loop never blocks on the database and the connection never changes threads. Writes that
arrive while a transaction runs go into the next one, which this thread starts at once: no round trip
through the event loop between transactions (a loop busy with 64 requests takes milliseconds a turn,
and every request waits for its ``sending`` mark). Callers waiting on one group share one wake-up.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class GroupCommitStopped(RuntimeError):
    """Work was handed to a thread that has been stopped."""


class _Group(Generic[K, V]):
    """Writes that go into one transaction, and its result for whoever waits on it."""

    __slots__ = ("done", "views", "writes")

    def __init__(self) -> None:
        self.writes: dict[K, V] = {}
        self.done: Future[None] = Future()
        self.views: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}

    def view(self) -> asyncio.Future[None]:
        """The commit as an awaitable on the running loop: one per loop, shared by all its waiters."""
        loop = asyncio.get_running_loop()
        view = self.views.get(loop)
        if view is None:
            view = self.views[loop] = asyncio.wrap_future(self.done, loop=loop)
        return view


class GroupCommitThread(Generic[K, V]):
    """Runs ``write(group)`` for each group of buffered writes (a later write to a key replaces an
    earlier one) and submitted jobs, alternating between the two so neither starves the other."""

    def __init__(self, name: str, write: Callable[[dict[K, V]], None]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._jobs: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._open: _Group[K, V] = _Group()
        self._stopping = False
        self._last: tuple[Callable[[], Any], Future[Any]] | None = None  # runs after everything else
        self.groups = 0  # transactions written
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ----- callers (any thread; the awaitables on an event loop) ----------------------------------
    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._cond:
            self._check_running()
            self._jobs.append((job, future))
            self._cond.notify()
        return future

    async def call(self, job: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.submit(job))

    def buffer(self, writes: Mapping[K, V] | Iterable[tuple[K, V]]) -> None:
        """Add writes to the next group; the thread writes it as soon as it is free."""
        with self._cond:
            self._check_running()
            self._open.writes.update(writes)
            self._cond.notify()

    async def commit(self, writes: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        """Add writes; return once they, and everything buffered before them, are committed."""
        with self._cond:
            self._check_running()
            group = self._open
            group.writes.update(writes)
            view = group.view()
            self._cond.notify()
        await asyncio.shield(view)  # a cancelled waiter must not cancel the group for the others

    def _check_running(self) -> None:
        """Called holding the lock: nothing may be handed over once stopping has begun."""
        if self._stopping:
            raise GroupCommitStopped("the ledger thread has stopped")

    def _stop(self, last: Callable[[], None]) -> Future[None]:
        future: Future[None] = Future()
        with self._cond:
            self._check_running()  # a second stop would wait for a thread that has ended
            self._last = (last, future)
            self._stopping = True
            self._cond.notify()
        return future

    async def stop(self, last: Callable[[], None]) -> None:
        """Write everything buffered, run ``last`` as the final job, and end the thread."""
        try:
            await asyncio.wrap_future(self._stop(last))
        finally:
            await asyncio.to_thread(self._thread.join)

    def stop_now(self, last: Callable[[], None]) -> None:
        """``stop`` for callers outside an event loop: blocks until the thread has ended."""
        try:
            self._stop(last).result()
        finally:
            self._thread.join()

    # ----- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        group_next = True
        while True:
            job: tuple[Callable[[], Any], Future[Any]] | None = None
            group: _Group[K, V] | None = None
            with self._cond:
                while not (self._jobs or self._open.writes or self._open.views or self._stopping):
                    self._cond.wait()
                waiting_group = bool(self._open.writes or self._open.views)
                if waiting_group and (group_next or not self._jobs):
                    group, self._open = self._open, _Group()
                elif self._jobs:
                    job = self._jobs.popleft()
                else:  # stopping, and every group and job handed over is done
                    job = self._last
                    self._last = None
            if job is None and group is None:
                return
            if group is not None:
                group_next = False
                self._commit(group)
            elif job is not None:
                group_next = True
                _run_job(*job)

    def _commit(self, group: _Group[K, V]) -> None:
        try:
            if group.writes:
                self._write(group.writes)
                self.groups += 1
        except BaseException as exc:  # every waiter of the group gets it
            group.done.set_exception(exc)
        else:
            group.done.set_result(None)


def _run_job(job: Callable[[], Any], future: Future[Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = job()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)

"""The ledger's database thread on its own: group commits, jobs, errors, cancellation, stop.

The SQL behind it is tested in test_sql_ledger.py; here the write is a recording function, so the
thread's promises can be checked exactly (what went into which transaction, in what order).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from airflow_provider_sms.dispatch.group_commit import GroupCommitStopped, GroupCommitThread


class Recorder:
    """A write that takes ``seconds`` (like a commit) and remembers every group it was given."""

    def __init__(self, seconds: float = 0.002, fail_on: str | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.groups: list[dict[str, int]] = []
        self.threads: set[str] = set()

    def __call__(self, writes: dict[str, int]) -> None:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        if self.fail_on is not None and self.fail_on in writes:
            raise RuntimeError(f"cannot write {self.fail_on}")
        self.groups.append(dict(writes))


async def test_waiters_return_after_their_writes_are_committed_in_few_groups() -> None:
    recorder = Recorder()
    db: GroupCommitThread[str, int] = GroupCommitThread("ledger-test", recorder)
    try:
        committed: list[str] = []

        async def mark(key: str) -> None:
            await db.commit([(key, 1)])
            assert any(key in group for group in recorder.groups)  # written before the return
            committed.append(key)

        await asyncio.gather(*(mark(f"k{i}") for i in range(100)))
        assert len(committed) == 100
        assert 1 <= len(recorder.groups) <= 5  # 100 concurrent waiters share transactions
        assert recorder.threads == {"ledger-test"}
    finally:
        await db.stop(lambda: None)


async def test_buffered_writes_go_in_before_a_later_commit_and_the_last_write_wins() -> None:
    recorder = Recorder()
    db: GroupCommitThread[str, int] = GroupCommitThread("ledger-test", recorder)
    try:
        db.buffer([("a", 1)])
        db.buffer([("a", 2), ("b", 2)])
        await db.commit([("c", 3)])
        merged: dict[str, int] = {}
        for group in recorder.groups:
            merged.update(group)
        assert merged == {"a": 2, "b": 2, "c": 3}
    finally:
        await db.stop(lambda: None)


async def test_a_stream_of_writes_does_not_starve_jobs() -> None:
    db: GroupCommitThread[str, int] = GroupCommitThread("ledger-test", Recorder(seconds=0.005))
    stop = asyncio.Event()

    async def feeder() -> None:  # outcomes keep arriving: a new group is always waiting
        i = 0
        while not stop.is_set():
            i += 1
            db.buffer([(f"k{i}", i)])
            await asyncio.sleep(0.001)

    feeding = asyncio.create_task(feeder())
    try:
        await asyncio.sleep(0.05)  # the thread is busy with groups back to back
        started = time.perf_counter()
        assert await asyncio.wait_for(db.call(lambda: "claimed"), timeout=2) == "claimed"
        assert time.perf_counter() - started < 0.1  # the job ran between two groups
    finally:
        stop.set()
        await feeding
        await db.stop(lambda: None)


async def test_a_failed_group_reaches_every_waiter_and_the_next_group_is_written() -> None:
    recorder = Recorder(seconds=0.02, fail_on="bad")
    db: GroupCommitThread[str, int] = GroupCommitThread("ledger-test", recorder)
    try:
        db.buffer([("first", 0)])  # the thread starts on this one; the next two wait together
        await asyncio.sleep(0.005)
        results = await asyncio.gather(
            db.commit([("bad", 1)]), db.commit([("good", 1)]), return_exceptions=True
        )
        assert [str(r) for r in results] == ["cannot write bad", "cannot write bad"]
        await db.commit([("later", 2)])
        assert {"later": 2} in recorder.groups
    finally:
        await db.stop(lambda: None)


async def test_a_failed_job_raises_to_its_caller_and_the_thread_goes_on() -> None:
    db: GroupCommitThread[str, int] = GroupCommitThread("ledger-test", Recorder())

    def broken() -> None:
        raise ValueError("job failed")

    try:
        with pytest.raises(ValueError, match="job failed"):
            await db.call(broken)
        assert await db.call(lambda: 42) == 42
    finally:
        await db.stop(lambda: None)


async def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    recorder = Recorder(seconds=0.05)
    db: GroupCommitThread[str, int] = GroupCommitThread("ledger-test", recorder)
    try:
        db.buffer([("first", 0)])
        await asyncio.sleep(0.005)
        impatient = asyncio.create_task(db.commit([("x", 1)]))
        patient = asyncio.create_task(db.commit([("y", 1)]))
        await asyncio.sleep(0.01)
        impatient.cancel()
        await patient  # same group, still committed
        assert any(group.get("y") == 1 and group.get("x") == 1 for group in recorder.groups)
    finally:
        await db.stop(lambda: None)


async def test_stop_writes_what_is_buffered_then_runs_the_last_job_and_refuses_more() -> None:
    recorder = Recorder()
    db: GroupCommitThread[str, int] = GroupCommitThread("ledger-test", recorder)
    order: list[str] = []
    db.buffer([("outcome", 1)])
    await db.stop(lambda: order.append(f"last, after {len(recorder.groups)} group(s)"))
    assert order == ["last, after 1 group(s)"]
    assert recorder.groups == [{"outcome": 1}]
    with pytest.raises(GroupCommitStopped):
        await db.commit([("late", 1)])
    with pytest.raises(GroupCommitStopped):
        db.buffer([("late", 1)])
    with pytest.raises(GroupCommitStopped):
        db.submit(lambda: None)
    with pytest.raises(GroupCommitStopped):
        await asyncio.wait_for(db.stop(lambda: None), timeout=2)  # refused, not a wait for a dead thread


async def test_the_last_job_runs_after_a_group_buffered_while_the_previous_one_was_written() -> None:
    # The thread alternates groups and jobs; the last job must still wait for every group.
    writing = threading.Event()
    release = threading.Event()
    written: list[dict[str, int]] = []

    def write(writes: dict[str, int]) -> None:
        writing.set()
        release.wait(5)
        written.append(dict(writes))

    db: GroupCommitThread[str, int] = GroupCommitThread("ledger-test", write)
    db.buffer([("first", 1)])
    assert await asyncio.to_thread(writing.wait, 5)  # the thread is inside write() with the first group
    db.buffer([("second", 2)])
    stopped = asyncio.ensure_future(db.stop(lambda: written.append({"last": 0})))
    await asyncio.sleep(0.05)
    release.set()
    await stopped
    assert written == [{"first": 1}, {"second": 2}, {"last": 0}]

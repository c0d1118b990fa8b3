"""The ledger the engine uses against duplicates and for resuming, and ``NullLedger``, which keeps nothing.

The durable one (``dispatch.sql_ledger.SqlLedger``) records, per campaign key and number: claimed ->
sending -> final outcome. The engine claims recipients before queueing them, marks a batch
``sending`` durably right before its request, and records the outcome after the reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_sms.dispatch.outcomes import Verdict


class LedgerError(RuntimeError):
    """The ledger could not keep its promise (a write failed, or a number is not ours any more)."""


class Ledger(Protocol):
    async def open(self) -> None:
        """Connect, and start renewing this task's lease on what it claims."""

    async def claim(self, phones: Sequence[str], *, alive_since: float | None = None) -> dict[str, Verdict]:
        """Claim ``phones`` for this task; return a verdict for each number that is not ours to send:
        handled by this campaign already (``skipped``, ``accepted_earlier``, ``ambiguous``) or being
        sent by another task (``held``; code ``live`` when that task renewed its lease after
        ``alive_since``)."""

    async def mark_sending(self, phones: Sequence[str]) -> None:
        """Durably note that a request for ``phones`` is about to start (crash => ambiguous, not resent)."""

    def record(self, phones: Sequence[str], verdict: Verdict) -> None:
        """Note the final outcome of ``phones`` (buffered; written before the next mark and at close)."""

    async def done_count(self, phones: Sequence[str]) -> int:
        """How many of ``phones`` this campaign sent, or may have sent (for the balance guard)."""

    @property
    def lease(self) -> float:
        """Seconds a claim outlives the last heartbeat of a task that stopped without closing."""

    async def close(self) -> None: ...


class NullLedger:
    """No memory across runs: every recipient is claimed, nothing is recorded."""

    lease = 0.0

    async def open(self) -> None:
        return None

    async def claim(self, phones: Sequence[str], *, alive_since: float | None = None) -> dict[str, Verdict]:
        return {}

    async def mark_sending(self, phones: Sequence[str]) -> None:
        return None

    def record(self, phones: Sequence[str], verdict: Verdict) -> None:
        return None

    async def done_count(self, phones: Sequence[str]) -> int:
        return 0

    async def close(self) -> None:
        return None

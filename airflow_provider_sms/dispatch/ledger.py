"""The ledger interface the engine uses against duplicates and for resuming; ``NullLedger`` keeps nothing.

A durable implementation (``dispatch.sql_ledger.SqlLedger``) records, per campaign key and number:
claimed -> sending -> final outcome. The engine claims recipients before queueing them, marks a
batch "sending" durably right before its request, and records the outcome after the reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_sms.dispatch.outcomes import Verdict
    from airflow_provider_sms.dispatch.recipients import Recipient


class LedgerError(RuntimeError):
    """The ledger could not keep its promise (a write failed, or a number is not ours any more)."""


class Ledger(Protocol):
    @property
    def journaled(self) -> bool:
        """Whether requests' starts and answers go to a send journal (``dispatch.journal``): a crash then
        leaves only the requests in flight unknown, not the batches marked ahead of a free connection."""

    async def claim(self, recipients: Sequence[Recipient]) -> dict[str, Verdict]:
        """Claim ``recipients`` for this run; return a verdict (SKIPPED or AMBIGUOUS) for each number
        that is not ours to send because this campaign already handled it or another task holds it."""

    async def mark_sending(self, phones: Sequence[str]) -> None:
        """Durably note that a request for ``phones`` is about to start (crash => ambiguous, not resent)."""

    def started(self, phones: Sequence[str]) -> None:
        """The request for ``phones`` (marked) starts now: journaled before it may leave."""

    def undelivered(self, phones: Sequence[str]) -> None:
        """No try for ``phones`` was delivered so far (an answer proved it); the batch is tried again."""

    def record(self, phones: Sequence[str], verdict: Verdict) -> None:
        """Note the final outcome of ``phones`` (may be buffered; flushed before the next mark/close)."""

    async def done_count(self, phones: Sequence[str] | None = None) -> int:
        """How many numbers this campaign already sent, or may have sent; of ``phones`` only when given
        (the balance guard of one part of a campaign shared by several task instances)."""

    async def close(self) -> None: ...


class NullLedger:
    """No memory across runs: every recipient is claimed, nothing is recorded."""

    journaled = False

    async def claim(self, recipients: Sequence[Recipient]) -> dict[str, Verdict]:
        return {}

    async def mark_sending(self, phones: Sequence[str]) -> None:
        return None

    def started(self, phones: Sequence[str]) -> None:
        return None

    def undelivered(self, phones: Sequence[str]) -> None:
        return None

    def record(self, phones: Sequence[str], verdict: Verdict) -> None:
        return None

    async def done_count(self, phones: Sequence[str] | None = None) -> int:
        return 0

    async def close(self) -> None:
        return None

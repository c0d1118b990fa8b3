"""The outcome of each recipient, and the compact summary of a campaign."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    """Exactly one of these ends every input row."""

    ACCEPTED = "accepted"  # the gateway took the message
    REJECTED = "rejected"  # bad input: refused by us before sending, or by the gateway
    FAILED = "failed"  # transient faults until retries ran out, a fatal answer, or an unknown code
    AMBIGUOUS = "ambiguous"  # may have been delivered (timeout after sending, reply lost): not resent
    SKIPPED = "skipped"  # the ledger says another task of this campaign already sent it
    ACCEPTED_EARLIER = "accepted_earlier"  # accepted by an earlier try of this same task instance
    HELD = "held"  # another task of this campaign, alive, is sending it
    NOT_SENT = "not_sent"  # never attempted: the campaign stopped on a fatal answer first
    DUPLICATE = "duplicate"  # the same number appeared earlier in the input: sent once, reported there
    SUPPRESSED = "suppressed"  # on a suppression list (opt-out, complaint, staff): never sent
    CAPPED = "capped"  # marketing: the number got its allowed messages in the period already
    DEFERRED = "deferred"  # quiet hours began first: sent when the window opens again (same task)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happened to one batch (all its recipients share it)."""

    outcome: Outcome
    code: str = ""
    message: str = ""
    gateway_id: str = ""
    attempts: int = 0


@dataclass
class Summary:
    """Counts by outcome and a few gateway ids: the small, JSON-able XCom of a campaign."""

    gateway: str
    campaign: str = ""
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    reasons: dict[str, int] = field(default_factory=dict)  # "rejected: <code> <message>" -> count
    requests: int = 0
    batches: int = 0
    gateway_ids: list[str] = field(default_factory=list)
    stopped: str | None = None
    stop_retryable: bool = False  # the stop came from outside or from a fault a later try may not meet
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    report_uri: str | None = None
    estimate: dict[str, Any] | None = None
    purpose: str = ""
    policy: dict[str, Any] | None = None  # the contact policy applied (see dispatch.policy)
    paused: bool = False  # quiet hours stopped it: the deferred recipients wait for the window
    resume_at: str | None = None  # quiet hours: when the deferred recipients will be sent

    MAX_IDS = 20
    MAX_REASONS = 20

    def add(self, outcome: Outcome, count: int, code: str = "", message: str = "") -> None:
        self.counts[outcome.value] += count
        if outcome in (Outcome.REJECTED, Outcome.FAILED, Outcome.AMBIGUOUS) and (code or message):
            key = f"{outcome.value}: {code} {message}".strip()
            if key in self.reasons or len(self.reasons) < self.MAX_REASONS:
                self.reasons[key] = self.reasons.get(key, 0) + count

    def add_id(self, gateway_id: str) -> None:
        if gateway_id and len(self.gateway_ids) < self.MAX_IDS:
            self.gateway_ids.append(gateway_id)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def unique(self) -> int:
        return self.total - self.counts[Outcome.DUPLICATE.value]

    def failed_ratio(self) -> float:
        if self.dry_run:
            return 0.0
        attempted = self.counts["accepted"] + self.counts["failed"] + self.counts["not_sent"]
        bad = self.counts["failed"] + self.counts["not_sent"]
        return bad / attempted if attempted else 0.0

    def rejected_ratio(self) -> float:
        return self.counts["rejected"] / self.unique if self.unique else 0.0

    def as_dict(self) -> dict[str, Any]:
        elapsed = round(self.elapsed, 3)
        done = self.unique
        return {
            "gateway": self.gateway,
            "campaign": self.campaign,
            "purpose": self.purpose,
            "dry_run": self.dry_run,
            "total": self.total,
            "unique": done,
            **self.counts,
            "requests": self.requests,
            "batches": self.batches,
            "reasons": self.reasons,
            "gateway_ids": self.gateway_ids,
            "stopped": self.stopped,
            "elapsed_s": elapsed,
            "recipients_per_s": round(done / elapsed, 1) if elapsed > 0 else None,
            "report_uri": self.report_uri,
            **({"estimate": self.estimate} if self.estimate else {}),
            **({"policy": self.policy} if self.policy is not None else {}),
            **({"resume_at": self.resume_at} if self.resume_at else {}),
        }

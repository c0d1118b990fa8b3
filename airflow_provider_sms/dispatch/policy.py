"""The contact policy of a send: who may be texted, how often, when, and with what text.

A send states its purpose (``marketing``, ``notification`` or ``verification``). Suppression applies
to every purpose (those numbers must never be texted); the frequency cap, quiet hours and the opt-out
text apply to marketing. The engine screens each chunk of clean recipients after normalisation and
before its claim: suppressed numbers end ``suppressed``, numbers over the cap ``capped``; neither is
claimed, so a later campaign may still text them once allowed. No Airflow import here.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.protocol import phones

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

Purpose = Literal["marketing", "notification", "verification"]
PURPOSES: tuple[str, ...] = ("marketing", "notification", "verification")
MARKETING = "marketing"

# The usual ways a Chinese marketing SMS tells how to refuse: 拒收请回复R, 回T退订, 退订回TD, 回复TD退订,
# 退订请回N... A reply word (R, T, TD, N, 0) near 回/回复, or the word 退订 / 拒收 with a reply.
DEFAULT_OPT_OUT_PATTERN = (
    r"(拒收|退订)\s*(请)?\s*回(复)?\s*[A-Za-z0-9]{1,4}"
    r"|回(复)?\s*[A-Za-z0-9]{1,4}\s*(退订|拒收)"
    r"|reply\s+(STOP|TD|T|R)\b"
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_CLOCK = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?$")


def duration_seconds(text: str) -> float:
    """``"24h"`` -> 86400: a rolling period for the frequency cap (s, m, h or d)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError("must be a duration such as '24h', '7d' or '30m'")
    return float(match.group(1)) * _UNIT[match.group(2).lower()]


def check_opt_out(template_text: str, pattern: str = DEFAULT_OPT_OUT_PATTERN) -> None:
    """Refuse a marketing template whose text tells nobody how to refuse (carriers require it)."""
    if not re.search(pattern, template_text, re.IGNORECASE):
        raise InvalidInputError(
            "a marketing template must tell how to opt out (e.g. '拒收请回复R' or '回T退订'); "
            f"template_text matches no opt_out_pattern ({pattern!r}). Add the instruction to the "
            "template, or set the purpose if this is not marketing"
        )


# ----- suppression ----------------------------------------------------------------------------------
class SuppressionList:
    """Numbers that must never be texted, held as a sorted array of 64-bit integers: 8 bytes a number
    (1,000,000 numbers take 8 MB, not the ~100 MB of a set of strings), looked up by bisection."""

    def __init__(self, values: Iterable[object]) -> None:
        numbers = array("q")
        self.invalid = 0  # lines that are not a mobile number (a header, a landline): ignored, counted
        for value in values:
            try:
                numbers.append(int(phones.normalize(value)))
            except phones.InvalidPhoneNumber:
                self.invalid += 1
        self._sorted = array("q", sorted(set(numbers)))

    def __len__(self) -> int:
        return len(self._sorted)

    def __contains__(self, phone: object) -> bool:
        """``phone``: a normalised number."""
        key = int(str(phone))
        at = bisect_left(self._sorted, key)
        return at < len(self._sorted) and self._sorted[at] == key


class SuppressionLookup(Protocol):
    async def contains(self, phones: Sequence[str]) -> set[str]: ...


@runtime_checkable
class ContactHistory(Protocol):
    """What the policy asks of the ledger: the contact history and the suppression table."""

    suppressions: SuppressionLookup

    async def accepted_since(
        self, phones: Sequence[str], since: float, *, other_campaigns: bool = False
    ) -> dict[str, int]: ...


# ----- the audience guard ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AudienceGuard:
    """Fail before anything is sent when the audience is not the size expected (a join gone wrong)."""

    max_recipients: int | None = None
    expected_recipients: int | None = None
    tolerance: float = 0.1  # a share of expected_recipients

    @property
    def active(self) -> bool:
        return self.max_recipients is not None or self.expected_recipients is not None

    def check(self, count: int) -> None:
        """``count``: unique valid recipients of the audience (before suppression and caps)."""
        if self.max_recipients is not None and count > self.max_recipients:
            raise InvalidInputError(
                f"the audience has {count} recipients, more than max_recipients={self.max_recipients}; "
                "nothing was sent"
            )
        expected = self.expected_recipients
        if expected is not None:
            low, high = expected * (1 - self.tolerance), expected * (1 + self.tolerance)
            if not low <= count <= high:
                raise InvalidInputError(
                    f"the audience has {count} recipients, expected {expected} within "
                    f"{self.tolerance:.0%} ({low:.0f} to {high:.0f}); nothing was sent"
                )


# ----- quiet hours ----------------------------------------------------------------------------------
def _clock_time(text: str) -> time:
    match = _CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time of day HH:MM or HH:MM:SS")
    hours, minutes, seconds = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if hours == 24:
        if minutes or seconds:
            raise ValueError(f"{text!r} is after 24:00")
        return time.max
    return time(hours, minutes, seconds)


@dataclass(frozen=True)
class QuietHours:
    """The daily window marketing may be sent in, in a time zone: ``QuietHours.parse("08:00-21:00")``.
    A window whose end is before its start spans midnight (``"22:00-06:00"``)."""

    start: time
    end: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, window: str, zone: str = "Asia/Shanghai") -> QuietHours | None:
        """None for ``"off"``; a ValueError naming the problem otherwise."""
        if window.strip().lower() in ("off", "none"):
            return None
        start, sep, end = window.partition("-")
        if not sep:
            raise ValueError("must be a window such as '08:00-21:00' or 'off'")
        first, last = _clock_time(start), _clock_time(end)
        if first == last:
            raise ValueError(f"the window {window!r} is empty; use 'off' for no quiet hours")
        return cls(first, last, ZoneInfo(zone))

    def __str__(self) -> str:
        end = "24:00" if self.end == time.max else self.end.strftime("%H:%M:%S")
        return f"{self.start.strftime('%H:%M:%S')}-{end} {self.zone.key}"

    def _local(self, now: datetime) -> datetime:
        return now.astimezone(self.zone)

    def is_open(self, now: datetime) -> bool:
        t = self._local(now).time()
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def _at(self, day: datetime, when: time) -> datetime:
        if when == time.max:
            return datetime.combine(day.date() + timedelta(days=1), time(), self.zone)
        return datetime.combine(day.date(), when, self.zone)

    def next_open(self, now: datetime) -> datetime:
        """When the window next opens (``now`` itself when it is open)."""
        if self.is_open(now):
            return now
        local = self._local(now)
        today = self._at(local, self.start)
        return today if today > local else self._at(local + timedelta(days=1), self.start)

    def closes_at(self, now: datetime) -> datetime:
        """When the open window around ``now`` closes."""
        local = self._local(now)
        today = self._at(local, self.end)
        return today if today > local else self._at(local + timedelta(days=1), self.end)


def describe(
    purpose: str,
    *,
    suppression: SuppressionList | None,
    suppression_table: bool,
    max_per_number: int | None,
    per: str,
    quiet_hours: QuietHours | None,
    opt_out_checked: bool,
) -> dict[str, Any]:
    """The policy a send applied, for its summary: small, no number in it."""
    marketing = purpose == MARKETING
    return {
        "suppression_list": len(suppression) if suppression is not None else None,
        "suppression_table": suppression_table,
        "max_per_number": max_per_number if marketing else None,
        "per": per if marketing and max_per_number else None,
        "quiet_hours": str(quiet_hours) if marketing and quiet_hours else None,
        "opt_out_text_checked": opt_out_checked,
    }


@dataclass(frozen=True)
class ContactPolicy:
    """What the engine applies to each chunk of clean recipients before claiming it."""

    purpose: str = MARKETING
    suppression: SuppressionList | None = None
    suppression_table: bool = False  # also look the numbers up in the ledger's ``sms_suppressions``
    max_per_number: int | None = None  # marketing: accepted messages per number in ``per_seconds``
    per_seconds: float = 86_400.0
    per: str = "24h"
    guard: AudienceGuard = AudienceGuard()
    stop_at: float | None = None  # epoch seconds: quiet hours begin, no new request after it
    details: dict[str, Any] | None = None  # what the summary shows of the policy

    @property
    def capped(self) -> bool:
        return self.purpose == MARKETING and self.max_per_number is not None

    @property
    def needs_history(self) -> bool:
        return self.capped or self.suppression_table


def approval_text(summary: dict[str, Any]) -> str:
    """What a person approves a send on (Markdown), from a dry run's summary: the counts, the
    policy's effect, the estimated cost, and the first numbers it would text, masked."""
    estimate = summary.get("estimate") or {}
    lines = [
        f"**{estimate.get('recipients', 0)} recipient(s) to send** of {summary.get('total', 0)} input rows "
        f"(purpose: {summary.get('purpose') or 'marketing'}).",
        "",
        "| effect | recipients |",
        "|---|---:|",
        *(
            f"| {outcome} | {summary.get(outcome, 0)} |"
            for outcome in ("suppressed", "capped", "duplicate", "rejected", "skipped")
        ),
    ]
    policy = summary.get("policy") or {}
    if policy.get("deferred_until"):
        lines += ["", f"Quiet hours now: it would start at {policy['deferred_until']}."]
    if "estimated_cost" in estimate:
        lines += [
            "",
            f"Estimated cost: {estimate['estimated_cost']} ({estimate['price_per_message']} a message).",
        ]
    lines += ["", f"About {estimate.get('estimated_seconds', 0)} s, {estimate.get('requests', 0)} requests."]
    if estimate.get("sample_masked"):
        lines += ["", "First numbers: " + ", ".join(estimate["sample_masked"])]
    return "\n".join(lines)

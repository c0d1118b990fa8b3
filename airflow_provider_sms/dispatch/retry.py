"""Retry policy for transient faults: exponential backoff with full jitter, bounded twice."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` tries per request, never past ``max_elapsed`` seconds for one request."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_elapsed: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Sleep before try ``attempt + 1`` (``attempt`` counts from 1): full jitter avoids herds."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

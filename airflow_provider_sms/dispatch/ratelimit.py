"""A rate limit in requests per second that no one-second window ever exceeds.

Requests are paced evenly (1/rate apart, no bursts), and a sliding window of the last ``rate``
start times (one start per ``1/rate`` seconds below one per second) guards the bound itself, with a
4% margin (40 ms) for the jitter between leaving the client and reaching the gateway (new
connections, busy event loops): the achieved rate is about 96% of the limit.

Both limiters can be held: when the gateway answers ``Retry-After``, no request of the campaign
starts before that time, not only the retry of the request that got it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque


class _Holdable:
    """``_next``: the earliest time (monotonic) the next request may start."""

    _next = 0.0

    def hold(self, seconds: float) -> bool:
        """Start no request for ``seconds`` (waiters already in ``acquire`` see it too); True when
        this ends later than the hold (or pacing) already in place."""
        until = time.monotonic() + seconds
        longer, self._next = until > self._next, max(self._next, until)
        return longer


class RateLimiter(_Holdable):
    def __init__(self, per_second: float, *, margin: float = 0.04) -> None:
        if per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self.interval = 1.0 / per_second
        # Below one request per second the window is the interval: one request per 1/rate seconds.
        self.window = max(1.0, self.interval) + margin
        self._starts: deque[float] = deque(maxlen=max(1, math.floor(per_second)))
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for this request's turn. Waiters are served in order (one computes at a time), and the
        window holds the times requests were actually released, not planned: a late wake-up (a busy
        event loop) can delay the next requests but never squeeze more of them into one window."""
        async with self._lock:
            starts = self._starts
            while True:
                now = time.monotonic()
                slot = self._next
                if len(starts) == starts.maxlen:
                    slot = max(slot, starts[0] + self.window)
                if slot <= now:
                    break
                await asyncio.sleep(slot - now)
            starts.append(now)
            self._next = max(self._next, now - self.interval) + self.interval


class Unlimited(_Holdable):
    async def acquire(self) -> None:
        while (wait := self._next - time.monotonic()) > 0:
            await asyncio.sleep(wait)

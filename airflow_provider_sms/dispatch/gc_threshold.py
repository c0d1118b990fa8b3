"""CPython's young-generation collection threshold, raised for the length of a campaign.

Workers are released in bursts: one group commit of ``sending`` marks wakes tens of them at once,
and each builds its request before any finishes. More than 700 container objects (the default
threshold) are then alive for a moment, so a young collection ran every few requests, promoted
what was in flight, and set off full collections of the whole heap: 60 µs of CPU per juncdt
request and 250 µs per 100-number MMS request, in the event loop's one core (README, Performance).
A campaign makes no garbage cycles worth collecting early, so fewer, larger young collections cost
nothing in memory.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

YOUNG_THRESHOLD = 10_000


@contextmanager
def young_gc_threshold(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Raise the young generation's threshold to at least ``young`` inside the block, then put back
    the thresholds found. A threshold of 0 (automatic collection off) is left alone."""
    found = gc.get_threshold()
    if found[0] == 0 or found[0] >= young:
        yield
        return
    gc.set_threshold(young, *found[1:])
    try:
        yield
    finally:
        gc.set_threshold(*found)

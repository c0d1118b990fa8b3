"""What each gateway takes in one request, and the default bound of a call.

No imports: the connection form (``get_provider_info``) and the settings model read these in processes
that never send anything.
"""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_TIMEOUT = 30.0


class PerRequest(NamedTuple):
    """Numbers in one request: a connection's default, and the most the gateway takes."""

    default: int
    maximum: int


IHUYI_NUMBERS_PER_REQUEST = PerRequest(default=100, maximum=1000)
# 1 as the vendor's sample; up to 500 when recipients share params (code 30027 beyond).
JUNCDT_NUMBERS_PER_REQUEST = PerRequest(default=1, maximum=500)

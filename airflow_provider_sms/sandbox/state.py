"""What the sandbox gateway knows: accounts, logs, fault settings and forced codes.

Pure data and bookkeeping, no I/O, so tests can build, inspect and alter a state directly.
The default credentials (sandbox-only fakes) are re-exported here from :mod:`.accounts`.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_sms.sandbox.accounts import (
    IHUYI_ACCOUNT,
    IHUYI_BALANCE,
    IHUYI_PASSWORD,
    IHUYI_PRODUCT_IDS,
    IHUYI_TEMPLATE_ID,
    IHUYI_TEMPLATE_TITLE,
    JUNCDT_ACCESS_KEY,
    JUNCDT_ACCESS_SECRET,
    JUNCDT_DAILY_LIMIT,
    JUNCDT_PACKAGE_CODE,
    JUNCDT_QUOTA,
    JUNCDT_SIGN_CODES,
    JUNCDT_TEMPLATES,
    IhuyiAccount,
    IhuyiTemplate,
    JuncdtAccount,
    JuncdtSign,
    JuncdtTemplate,
    patch_ihuyi,
    patch_juncdt,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "IHUYI_ACCOUNT",
    "IHUYI_BALANCE",
    "IHUYI_PASSWORD",
    "IHUYI_PRODUCT_IDS",
    "IHUYI_TEMPLATE_ID",
    "IHUYI_TEMPLATE_TITLE",
    "JUNCDT_ACCESS_KEY",
    "JUNCDT_ACCESS_SECRET",
    "JUNCDT_DAILY_LIMIT",
    "JUNCDT_PACKAGE_CODE",
    "JUNCDT_QUOTA",
    "JUNCDT_SIGN_CODES",
    "JUNCDT_TEMPLATES",
    "Delivery",
    "FaultSettings",
    "ForcedCode",
    "IhuyiAccount",
    "IhuyiTemplate",
    "JuncdtAccount",
    "JuncdtSign",
    "JuncdtTemplate",
    "RequestRecord",
    "SandboxState",
    "new_id",
]

GATEWAY_METHODS: dict[str, tuple[str, ...]] = {
    "ihuyi": ("SendMms", "GetNum", "CreateMms"),
    "juncdt": ("sendMessage",),
}
HOSTILE_MODES = frozenset({"xml_bomb", "huge", "trickle", "redirect", "empty", "truncated", "gzip"})


@dataclass
class FaultSettings:
    """Fault injection for the gateway endpoints; everything off by default."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = None
    http_5xx_rate: float = 0.0
    # The HTTP error injected (by the rate, or for the next ``http_error_times`` requests whatever the
    # rate): its status (429 or 5xx) and the ``Retry-After`` it carries (seconds or an HTTP date).
    http_error_status: int = 503
    http_error_times: int = 0
    retry_after: str | None = None
    reset_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 600.0
    malformed_rate: float = 0.0
    ihuyi_encoding: str = "utf-8"
    ihuyi_namespace: bool = True
    ihuyi_prefixed_namespace: bool = False
    hostile: str | None = None
    redirect_to: str = "http://127.0.0.2:9/steal"
    huge_bytes: int = 100 * 1024 * 1024
    trickle_interval: float = 1.0

    def patch(self, values: Mapping[str, Any]) -> None:
        """Apply the given settings, refusing unknown names and out-of-range values (ValueError)."""
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        candidate = replace(self)
        for name, value in values.items():
            setattr(candidate, name, _fault_value(name, value))
        for name in ("http_5xx_rate", "reset_rate", "hang_rate", "malformed_rate"):
            if not 0.0 <= getattr(candidate, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if candidate.reset_rate + candidate.hang_rate + candidate.malformed_rate > 1.0 + 1e-9:
            raise ValueError("reset_rate + hang_rate + malformed_rate must not exceed 1 (one draw decides)")
        if candidate.ihuyi_encoding.lower() not in ("utf-8", "gbk"):
            raise ValueError("ihuyi_encoding must be 'utf-8' or 'gbk'")
        if not (candidate.http_error_status == 429 or 500 <= candidate.http_error_status <= 599):
            raise ValueError("http_error_status must be 429 or 500 to 599")
        if candidate.http_error_times < 0:
            raise ValueError("http_error_times must be 0 or more")
        retry_after = candidate.retry_after
        if retry_after is not None and not (retry_after.isascii() and retry_after.strip()):
            raise ValueError("retry_after must be null or a non-empty ASCII header value")
        if candidate.hostile is not None and candidate.hostile not in HOSTILE_MODES:
            raise ValueError(f"hostile must be null or one of {sorted(HOSTILE_MODES)}")
        for name, value in asdict(candidate).items():
            setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        """True when any fault could apply: lets the hot path skip every draw."""
        return bool(
            self.latency_ms
            or self.jitter_ms
            or self.http_5xx_rate
            or self.http_error_times
            or self.reset_rate
            or self.hang_rate
            or self.malformed_rate
            or self.hostile
        )


_FLOAT_FAULTS = frozenset(
    {
        "latency_ms",
        "jitter_ms",
        "http_5xx_rate",
        "reset_rate",
        "hang_rate",
        "hang_seconds",
        "malformed_rate",
        "trickle_interval",
    }
)
_BOOL_FAULTS = frozenset({"ihuyi_namespace", "ihuyi_prefixed_namespace"})


def _fault_value(name: str, value: Any) -> Any:
    if name in _FLOAT_FAULTS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a number >= 0")
        return float(value)
    if name in _BOOL_FAULTS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if name in ("seed", "hostile", "retry_after") and value is None:
        return None
    if name in ("seed", "huge_bytes", "http_error_status", "http_error_times"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


@dataclass
class ForcedCode:
    """The next ``times`` calls of one method answer ``code`` (``msg`` None: the table's text)."""

    code: str
    msg: str | None
    times: int


@dataclass(slots=True)
class Delivery:
    """One number a gateway accepted: what a phone would receive."""

    gateway: str
    number: str
    request_id: str
    at: float
    mmsid: str | None = None
    send_time: str | None = None
    template_code: str | None = None
    sign_code: str | None = None
    params: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields of this delivery's gateway, in the order the control API has always shown them."""
        own = ("mmsid", "send_time") if self.gateway == "ihuyi" else ("template_code", "sign_code", "params")
        return {name: getattr(self, name) for name in ("gateway", "number", *own, "request_id", "at")}


@dataclass(slots=True)
class RequestRecord:
    """One gateway request as it arrived (``at``) and how it was answered (``code``, ``fault``)."""

    at: float
    gateway: str
    method: str
    numbers: int
    code: str | None = None
    fault: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ids = itertools.count()


def new_id() -> str:
    """A fresh 19-digit id, like the vendor's long mmsid/smsid strings."""
    return f"{int(time.time() * 1000):013d}{next(_ids) % 1_000_000:06d}"


class SandboxState:
    """The live state of a sandbox gateway.

    ``config`` (the JSON config's shape: ``{"ihuyi": {...}, "juncdt": {...}, "faults": {...}}``) is
    applied over the defaults at start and again at every :meth:`reset`. ``record=False`` keeps only
    counters, not one record per delivery or request, for million-number benchmarks.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        record: bool = True,
        faults: FaultSettings | None = None,
    ) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.record = record
        self.base_faults = replace(faults) if faults else FaultSettings()
        if "faults" in self.config:
            self.base_faults.patch(self.config["faults"])
        self.ihuyi = IhuyiAccount()
        self.juncdt = JuncdtAccount()
        self.faults = replace(self.base_faults)
        self.rng = random.Random(self.faults.seed)
        self.deliveries: list[Delivery] = []
        self.requests: list[RequestRecord] = []
        self.forced: dict[tuple[str, str], deque[ForcedCode]] = {}
        self.delivery_counts: dict[str, int] = {"ihuyi": 0, "juncdt": 0}
        self.request_count = 0
        self.resets = 0  # requests still waiting out their latency across a reset are not processed
        self.reset()

    @classmethod
    def from_file(
        cls, path: str | Path, *, record: bool = True, faults: FaultSettings | None = None
    ) -> SandboxState:
        """Build a state from a JSON config file."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config must be a JSON object")
        return cls(data, record=record, faults=faults)

    def reset(self) -> None:
        """Back to the defaults (and the config): accounts, templates, logs, faults, forced codes."""
        self.resets += 1
        self.ihuyi = IhuyiAccount()
        self.juncdt = JuncdtAccount()
        self.faults = replace(self.base_faults)
        self.rng = random.Random(self.faults.seed)
        self.deliveries.clear()
        self.requests.clear()
        self.forced.clear()
        self.delivery_counts = {"ihuyi": 0, "juncdt": 0}
        self.request_count = 0
        accounts = {k: v for k, v in self.config.items() if k in ("ihuyi", "juncdt")}
        if accounts:
            self.patch_accounts(accounts)

    # Control operations -------------------------------------------------------------------------

    def set_faults(self, values: Mapping[str, Any]) -> None:
        """Change some fault settings; a new ``seed`` restarts the random draws."""
        self.faults.patch(values)
        if "seed" in values:
            self.rng = random.Random(self.faults.seed)

    def force(self, gateway: str, method: str, code: str, msg: str | None = None, times: int = 1) -> None:
        """Make the next ``times`` calls of ``gateway``/``method`` answer ``code``, nothing recorded."""
        if method not in GATEWAY_METHODS.get(gateway, ()):
            raise ValueError(f"unknown gateway/method {gateway!r}/{method!r}")
        if not code or times < 1:
            raise ValueError("code must be non-empty and times >= 1")
        self.forced.setdefault((gateway, method), deque()).append(ForcedCode(code, msg, times))

    def take_forced(self, gateway: str, method: str) -> ForcedCode | None:
        """The forced answer for this call, if any (consumes one use)."""
        if not self.forced:
            return None
        queue = self.forced.get((gateway, method))
        if not queue:
            return None
        forced = queue[0]
        forced.times -= 1
        if forced.times <= 0:
            queue.popleft()
            if not queue:
                del self.forced[(gateway, method)]
        return forced

    def patch_accounts(self, patch: Mapping[str, Any]) -> None:
        """Change account state, e.g. ``{"ihuyi": {"balance": 10}, "juncdt": {"quota": 5}}``."""
        unknown = set(patch) - {"ihuyi", "juncdt"}
        if unknown:
            raise ValueError(f"unknown gateways: {sorted(unknown)}")
        # All or nothing: a bad value leaves the accounts as they were.
        ihuyi, juncdt = self.ihuyi, self.juncdt
        if "ihuyi" in patch:
            ihuyi = copy.deepcopy(ihuyi)
            patch_ihuyi(ihuyi, patch["ihuyi"])
        if "juncdt" in patch:
            juncdt = copy.deepcopy(juncdt)
            patch_juncdt(juncdt, patch["juncdt"])
        self.ihuyi, self.juncdt = ihuyi, juncdt

    # Bookkeeping of the gateway endpoints ---------------------------------------------------------

    def log_request(self, gateway: str, method: str, numbers: int, at: float) -> RequestRecord:
        """Count a request; keep its record when recording."""
        self.request_count += 1
        entry = RequestRecord(at, gateway, method, numbers)
        if self.record:
            self.requests.append(entry)
        return entry

    def deliver(self, items: Iterable[Delivery], count: int, gateway: str) -> None:
        """Count ``count`` accepted numbers; keep their records when recording."""
        self.delivery_counts[gateway] += count
        if self.record:
            self.deliveries.extend(items)

    # Read-back ------------------------------------------------------------------------------------

    def delivery_summary(self) -> dict[str, Any]:
        """Counts per gateway, with distinct numbers and duplicates when recording."""
        summary: dict[str, Any] = {"total": sum(self.delivery_counts.values()), "recorded": self.record}
        for gateway, count in self.delivery_counts.items():
            entry: dict[str, Any] = {"deliveries": count, "distinct_numbers": None, "duplicates": None}
            if self.record:
                distinct = len({d.number for d in self.deliveries if d.gateway == gateway})
                entry.update(distinct_numbers=distinct, duplicates=count - distinct)
            summary[gateway] = entry
        return summary

    def snapshot(self) -> dict[str, Any]:
        """Balances, quota, templates and counters (no secrets)."""
        ihuyi, juncdt = self.ihuyi, self.juncdt
        return {
            "ihuyi": {
                "account": ihuyi.account,
                "balance": ihuyi.balance,
                "frozen": ihuyi.frozen,
                "ip_blocked": ihuyi.ip_blocked,
                "product_ids": sorted(ihuyi.product_ids),
                "blacklist": sorted(ihuyi.blacklist),
                "templates": list(ihuyi.templates),
            },
            "juncdt": {
                "access_key": juncdt.access_key,
                "quota": juncdt.quota,
                "daily_limit": juncdt.daily_limit,
                "signs": list(juncdt.signs),
                "templates": list(juncdt.templates),
            },
            "record": self.record,
            "requests": self.request_count,
            "deliveries": dict(self.delivery_counts),
            "forced": [
                {"gateway": g, "method": m, "code": f.code, "times": f.times}
                for (g, m), queue in self.forced.items()
                for f in queue
            ],
        }

"""Read and check a Connection's fields once, with errors that name the field to fix."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_sms.gateways.errors import InvalidInputError
from airflow_provider_sms.gateways.transport import DEFAULT_TIMEOUT, HttpSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection

# Bounds of the tuning knobs, for a connection's extras and a task's arguments alike.
LIMITS: dict[str, tuple[float, float]] = {
    "concurrency": (1, 512),
    "requests_per_second": (0.1, 100_000),
    "max_attempts": (1, 20),
    "mark_ahead": (0, 512),
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class SendTuning:
    """Knobs of the bulk send path, set per connection (extras) and overridable per task."""

    numbers_per_request: int
    concurrency: int = 16
    requests_per_second: float | None = None  # None = no limit beyond concurrency
    max_attempts: int = 4


def parse_flag(value: object, what: str) -> bool:
    """A yes/no setting (a bool, or a word as a template renders it). Anything else is an error, not
    "no": a typo must not turn a check off, or a dry run into a real send."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise InvalidInputError(f"{what} must be true or false, got {value!r}")


def parse_number(value: object, what: str, *, low: float, high: float, integer: bool = False) -> float | None:
    """An optional number setting (empty: None), as given or as a template renders it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    kind = "a whole number" if integer else "a number"
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
        if integer and not number.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be {kind}, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidInputError(f"{what} must be between {low:g} and {high:g}, got {number:g}")
    return int(number) if integer else number


class ConnectionFields:
    """Typed access to a Connection's extras (plain keys, or ``extra__<type>__key`` from old UIs)."""

    def __init__(self, conn: Connection, conn_type: str) -> None:
        if conn.conn_type and conn.conn_type != conn_type:
            raise InvalidInputError(
                f"connection {conn.conn_id!r} is of type {conn.conn_type!r}, expected {conn_type!r}"
            )
        self.conn = conn
        self.conn_type = conn_type
        raw: Any = conn.extra_dejson if conn.extra else {}
        if isinstance(raw, str):  # double-encoded JSON seen in env-var connections
            raw = json.loads(raw)
        self.extras: dict[str, Any] = raw if isinstance(raw, dict) else {}

    def _raw(self, key: str) -> Any:
        for name in (key, f"extra__{self.conn_type}__{key}"):
            value = self.extras.get(name)
            if value not in (None, ""):
                return value
        return None

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._raw(key)
        return default if value is None else str(value)

    def number(
        self, key: str, default: float | None, *, low: float, high: float, integer: bool = False
    ) -> float | None:
        what = f"connection {self.conn.conn_id!r}: extra {key!r}"
        value = parse_number(self._raw(key), what, low=low, high=high, integer=integer)
        return default if value is None else value

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.number(key, default, low=low, high=high, integer=True)
        return int(default if value is None else value)

    def flag(self, key: str, default: bool) -> bool:
        """A yes/no extra. Anything else is an error, not "no": a typo must not turn a check off."""
        value = self._raw(key)
        if value is None:
            return default
        return parse_flag(value, f"connection {self.conn.conn_id!r}: extra {key!r}")

    def http_settings(self, default_host: str) -> HttpSettings:
        """How to reach the gateway: host, ``timeout``, and TLS (``verify_tls``, ``ca_bundle``)."""
        ca_bundle = self.text("ca_bundle")
        if ca_bundle is not None and not os.path.isfile(ca_bundle):
            raise InvalidInputError(
                f"connection {self.conn.conn_id!r}: extra 'ca_bundle' must be the path of a PEM file of "
                f"CA certificates on the worker; there is no file {ca_bundle!r}"
            )
        timeout = self.number("timeout", DEFAULT_TIMEOUT, low=0.1, high=600)
        return HttpSettings(
            base_url=self.base_url(default_host),
            timeout=float(timeout or DEFAULT_TIMEOUT),
            verify=self.flag("verify_tls", True),
            ca_bundle=ca_bundle,
        )

    def base_url(self, default: str) -> str:
        """Host field: a full URL, or a bare host name that gets the scheme of ``default``."""
        host = (self.conn.host or "").strip()
        if not host:
            return default
        if "://" not in host:
            scheme = (self.conn.schema or default.split("://", 1)[0]).strip()
            host = f"{scheme}://{host}"
        if self.conn.port and host.count(":") < 2:
            host = f"{host.rstrip('/')}:{self.conn.port}"
        return host.rstrip("/")

    def required(self, value: str | None, field: str) -> str:
        if not value:
            raise InvalidInputError(f"connection {self.conn.conn_id!r} has no {field}")
        return value

    def tuning(self, default_per_request: int, max_per_request: int) -> SendTuning:
        low, high = LIMITS["requests_per_second"]
        rps = self.number("requests_per_second", None, low=low, high=high)
        return SendTuning(
            numbers_per_request=self.integer(
                "numbers_per_request", default_per_request, low=1, high=max_per_request
            ),
            concurrency=self.integer("concurrency", 16, low=1, high=int(LIMITS["concurrency"][1])),
            requests_per_second=rps,
            max_attempts=self.integer("max_attempts", 4, low=1, high=int(LIMITS["max_attempts"][1])),
        )


def mask_secrets(*secrets: str | None) -> None:
    """Register secrets with Airflow's masker: extras are not masked by Airflow unless told."""
    from airflow.sdk.log import mask_secret

    for secret in secrets:
        if secret:
            mask_secret(secret)

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

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class SendTuning:
    """Knobs of the bulk send path, set per connection (extras) and overridable per task."""

    numbers_per_request: int
    concurrency: int = 16
    requests_per_second: float | None = None  # None = no limit beyond concurrency
    max_attempts: int = 4


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
        value = self._raw(key)
        if value is None:
            return default
        try:
            number = int(value) if integer else float(value)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"connection {self.conn.conn_id!r}: extra {key!r} must be a number, got {value!r}"
            ) from None
        if not low <= number <= high:
            raise InvalidInputError(
                f"connection {self.conn.conn_id!r}: extra {key!r} must be between {low:g} and {high:g}"
            )
        return number

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.number(key, default, low=low, high=high, integer=True)
        return int(default if value is None else value)

    def flag(self, key: str, default: bool) -> bool:
        """A yes/no extra. Anything else is an error, not "no": a typo must not turn a check off."""
        value = self._raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise InvalidInputError(
            f"connection {self.conn.conn_id!r}: extra {key!r} must be true or false, got {value!r}"
        )

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
        rps = self.number("requests_per_second", None, low=0.1, high=100_000)
        return SendTuning(
            numbers_per_request=self.integer(
                "numbers_per_request", default_per_request, low=1, high=max_per_request
            ),
            concurrency=self.integer("concurrency", 16, low=1, high=512),
            requests_per_second=rps,
            max_attempts=self.integer("max_attempts", 4, low=1, high=20),
        )


def mask_secrets(*secrets: str | None) -> None:
    """Register secrets with Airflow's masker: extras are not masked by Airflow unless told."""
    from airflow.sdk.log import mask_secret

    for secret in secrets:
        if secret:
            mask_secret(secret)

"""Read and check a Connection's fields once, with errors that name the field to fix."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from airflow_provider_sms.dispatch.settings import ConnectionExtras, SendSettings, validate
from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.gateways.transport import HttpSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_sms.gateways.limits import PerRequest

# The extras that set a send's tuning (a task's arguments override them).
TUNING_EXTRAS = (
    "concurrency",
    "requests_per_second",
    "numbers_per_request",
    "max_attempts",
    # the contact policy's defaults for this account (dispatch.policy)
    "quiet_hours",
    "quiet_hours_timezone",
    "max_per_number",
    "per",
    "opt_out_pattern",
    "price_per_message",
)
Model = TypeVar("Model", bound=BaseModel)


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

    def settings(self, model: type[Model], keys: tuple[str, ...]) -> Model:
        """The extras ``keys`` read by ``model``'s field rules (its defaults where absent); an error names
        the connection and each bad extra."""
        return validate(
            model,
            {key: self._raw(key) for key in keys},
            what=f"connection {self.conn.conn_id!r}: ",
            name=lambda key: f"extra {key!r}",
        )

    def checked_extras(self) -> ConnectionExtras:
        """``timeout``, ``pid`` and ``verify_tls``, checked."""
        return self.settings(ConnectionExtras, ("timeout", "pid", "verify_tls"))

    def http_settings(self, default_host: str) -> HttpSettings:
        """How to reach the gateway: host, ``timeout``, and TLS (``verify_tls``, ``ca_bundle``)."""
        ca_bundle = self.text("ca_bundle")
        if ca_bundle is not None and not os.path.isfile(ca_bundle):
            raise InvalidInputError(
                f"connection {self.conn.conn_id!r}: extra 'ca_bundle' must be the path of a PEM file of "
                f"CA certificates on the worker; there is no file {ca_bundle!r}"
            )
        extras = self.checked_extras()
        return HttpSettings(
            base_url=self.base_url(default_host),
            timeout=extras.timeout,
            verify=extras.verify_tls,
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

    def tuning(self, per_request: PerRequest) -> SendSettings:
        """The connection's send settings: its tuning extras, and the gateway's numbers per request
        unless the connection sets them (checked against the gateway's maximum)."""
        tuning = self.settings(SendSettings, TUNING_EXTRAS)
        given = tuning.numbers_per_request or per_request.default
        checked = check_per_request(given, per_request.maximum, f"connection {self.conn.conn_id!r}: extra ")
        return tuning.model_copy(update={"numbers_per_request": checked})


def check_per_request(value: int | None, maximum: int, what: str = "") -> int:
    """Numbers per request within the gateway's own maximum (the settings' bound is the largest one)."""
    if value is None or not 1 <= value <= maximum:
        raise InvalidInputError(
            f"{what}numbers_per_request must be between 1 and {maximum} for this gateway, got {value}"
        )
    return value


def mask_secrets(*secrets: str | None) -> None:
    """Register secrets with Airflow's masker: extras are not masked by Airflow unless told."""
    from airflow.sdk.log import mask_secret

    for secret in secrets:
        if secret:
            mask_secret(secret)

"""Provider metadata for Airflow: connection types with declarative form fields, and the classes.

The form's types, defaults and bounds come from the settings models' JSON schema, so the form and the
hooks agree by construction. Airflow reads this in the processes that discover providers (not at DAG
parse); pydantic is loaded there already, and the models and their schemas add about 30 ms.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from airflow_provider_sms.dispatch.settings import ConnectionExtras, SendSettings
from airflow_provider_sms.gateways.limits import (
    IHUYI_NUMBERS_PER_REQUEST,
    JUNCDT_NUMBERS_PER_REQUEST,
    PerRequest,
)

if TYPE_CHECKING:
    from pydantic import BaseModel


@cache
def _properties(model: type[BaseModel]) -> dict[str, Any]:
    return dict(model.model_json_schema()["properties"])


def form_schema(model: type[BaseModel], name: str, **override: Any) -> dict[str, Any]:
    """The form field's schema from the settings model's JSON schema: its type, default and bounds, so
    the form refuses what the hooks refuse. Every field may be left empty (the default applies)."""
    prop = _properties(model)[name]
    branch = next((b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"), prop)
    schema: dict[str, Any] = {"type": [branch["type"], "null"]}
    if prop.get("default") is not None:
        schema["default"] = prop["default"]
    # pydantic writes the bounds of an optional field as ``ge``/``le`` inside its ``anyOf``.
    for key, alias in (("minimum", "ge"), ("maximum", "le")):
        if (value := branch.get(key, branch.get(alias))) is not None:
            schema[key] = value
    return schema | override


def _per_request(limits: PerRequest) -> dict[str, Any]:
    """The settings model bounds numbers per request for every gateway; each gateway takes fewer."""
    return form_schema(SendSettings, "numbers_per_request", default=limits.default, maximum=limits.maximum)


def _tuning() -> dict[str, dict[str, Any]]:
    return {
        "timeout": {
            "label": "Timeout (seconds)",
            "description": "Upper bound of one gateway call, reply included.",
            "schema": form_schema(ConnectionExtras, "timeout"),
        },
        "concurrency": {
            "label": "Concurrent requests",
            "description": "Requests in flight at once during a bulk send.",
            "schema": form_schema(SendSettings, "concurrency"),
        },
        "requests_per_second": {
            "label": "Requests per second",
            "description": "Never exceeded in a bulk send (carriers block senders that burst). "
            "Empty: no limit.",
            "schema": form_schema(SendSettings, "requests_per_second"),
        },
        "max_attempts": {
            "label": "Attempts per request",
            "description": "Tries of one request on transient faults, with exponential backoff and jitter.",
            "schema": form_schema(SendSettings, "max_attempts"),
        },
        "verify_tls": {
            "label": "Verify TLS certificates",
            "description": "Turn off only for a test gateway.",
            "schema": form_schema(ConnectionExtras, "verify_tls"),
        },
        "ca_bundle": {
            "label": "CA bundle (path)",
            "description": "PEM file of CA certificates to trust instead of the default ones (a private CA).",
            "schema": {"type": ["string", "null"]},
        },
        **_policy(),
    }


def _policy() -> dict[str, dict[str, Any]]:
    """The contact policy's defaults for this account (a task's arguments override them)."""
    labels = {
        "quiet_hours": "Marketing quiet hours: sending window",
        "quiet_hours_timezone": "Sending window's time zone",
        "max_per_number": "Marketing cap: messages per number",
        "per": "Marketing cap: rolling period",
        "opt_out_pattern": "Opt-out text pattern (regex)",
        "price_per_message": "Price per message (dry-run cost)",
    }
    fields = SendSettings.model_fields
    return {
        name: {
            "label": label,
            "description": fields[name].description or "",
            "schema": form_schema(SendSettings, name),
        }
        for name, label in labels.items()
    }


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-sms",
        "name": "SMS and MMS (ihuyi, juncdt)",
        "description": "Send SMS and MMS from Airflow through the ihuyi MMS platform and the juncdt SMS API.",
        "versions": ["0.1.0"],
        "integrations": [
            {"integration-name": "ihuyi", "external-doc-url": "https://www.ihuyi.com/", "tags": ["service"]},
            {
                "integration-name": "juncdt",
                "external-doc-url": "https://market.juncdt.com/",
                "tags": ["service"],
            },
        ],
        "hooks": [
            {"integration-name": "ihuyi", "python-modules": ["airflow_provider_sms.hooks.ihuyi"]},
            {"integration-name": "juncdt", "python-modules": ["airflow_provider_sms.hooks.juncdt"]},
        ],
        "operators": [
            {
                "integration-name": "ihuyi",
                "python-modules": [
                    "airflow_provider_sms.operators.mms",
                    "airflow_provider_sms.operators.template",
                ],
            },
            {"integration-name": "juncdt", "python-modules": ["airflow_provider_sms.operators.sms"]},
        ],
        "sensors": [
            {"integration-name": "ihuyi", "python-modules": ["airflow_provider_sms.sensors.balance"]}
        ],
        "triggers": [
            {"integration-name": "ihuyi", "python-modules": ["airflow_provider_sms.triggers.balance"]}
        ],
        "notifications": ["airflow_provider_sms.notifications.sms.SmsNotifier"],
        "connection-types": [
            {
                "connection-type": "ihuyi",
                "hook-class-name": "airflow_provider_sms.hooks.ihuyi.IhuyiHook",
                "hook-name": "ihuyi MMS",
                "conn-fields": {
                    "pid": {
                        "label": "Default product id (pid)",
                        "description": "Used when a task does not pass pid.",
                        "schema": form_schema(ConnectionExtras, "pid"),
                    },
                    "numbers_per_request": {
                        "label": "Numbers per request",
                        "schema": _per_request(IHUYI_NUMBERS_PER_REQUEST),
                    },
                    **_tuning(),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {
                        "login": "Account (APIID)",
                        "password": "API key / password",
                        "host": "Gateway URL",
                    },
                    "placeholders": {"host": "http://10658.cc", "login": "C12345678"},
                },
            },
            {
                "connection-type": "juncdt",
                "hook-class-name": "airflow_provider_sms.hooks.juncdt.JuncdtHook",
                "hook-name": "juncdt SMS",
                "conn-fields": {
                    "classification_secret": {
                        "label": "Package code (classificationSecret)",
                        "description": "套餐码; a secret, masked in logs.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "sign_code": {
                        "label": "Default sign code",
                        "description": "Approved signature code, used when a task does not pass sign_code.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "numbers_per_request": {
                        "label": "Numbers per request",
                        "description": "1 as the vendor's sample; up to 500 when recipients share params.",
                        "schema": _per_request(JUNCDT_NUMBERS_PER_REQUEST),
                    },
                    **_tuning(),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "accessKey", "password": "accessSecret", "host": "Gateway URL"},
                    "placeholders": {"host": "https://market.juncdt.com"},
                },
            },
        ],
    }

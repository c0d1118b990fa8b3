"""Provider metadata for Airflow: connection types with declarative form fields, and the classes."""

from __future__ import annotations

from typing import Any

# Label and description of each form field; its type, bounds and default come from the model.
_FORM = {
    "timeout": ("Timeout (seconds)", "Upper bound of one gateway call, reply included."),
    "concurrency": ("Concurrent requests", "Requests in flight at once during a bulk send."),
    "requests_per_second": (
        "Requests per second",
        "Never exceeded in a bulk send (carriers block senders that burst). Empty: no limit.",
    ),
    "max_attempts": (
        "Attempts per request",
        "Tries of one request on transient faults, with exponential backoff and jitter.",
    ),
}


def _form_field(properties: dict[str, Any], name: str) -> dict[str, Any]:
    """A connection form field from a settings model's JSON schema: its bounds and default are the
    ones the hooks check, declared once in ``dispatch.settings``."""
    prop = properties[name]
    branch = next((b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"), prop)
    schema: dict[str, Any] = {"type": [branch["type"], "null"]}
    if prop.get("default") is not None:
        schema["default"] = prop["default"]
    # An optional field's bounds may be written ``ge``/``le`` by pydantic: as JSON Schema words here.
    for key, word in (("minimum", "minimum"), ("ge", "minimum"), ("maximum", "maximum"), ("le", "maximum")):
        if key in branch:
            schema[word] = branch[key]
    label, description = _FORM[name]
    return {"label": label, "description": description, "schema": schema}


def _tuning() -> dict[str, dict[str, Any]]:
    from airflow_provider_sms.dispatch.settings import ConnectionExtras, SendSettings

    extras = ConnectionExtras.model_json_schema()["properties"]
    settings = SendSettings.model_json_schema()["properties"]
    return {
        # The default timeout is the gateway clients' (gateways.transport), which this import stays clear of.
        "timeout": _form_field(extras, "timeout") | {"default": 30},
        **{
            name: _form_field(settings, name)
            for name in ("concurrency", "requests_per_second", "max_attempts")
        },
        "verify_tls": {
            "label": "Verify TLS certificates",
            "description": "Turn off only for a test gateway.",
            "schema": {"type": ["boolean", "null"], "default": True},
        },
        "ca_bundle": {
            "label": "CA bundle (path)",
            "description": "PEM file of CA certificates to trust instead of the default ones (a private CA).",
            "schema": {"type": ["string", "null"]},
        },
    }


def get_provider_info() -> dict[str, Any]:
    tuning = _tuning()
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
                        "schema": {"type": ["integer", "null"], "minimum": 0},
                    },
                    "numbers_per_request": {
                        "label": "Numbers per request",
                        "schema": {
                            "type": ["integer", "null"],
                            "default": 100,
                            "minimum": 1,
                            "maximum": 1000,
                        },
                    },
                    **tuning,
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
                        "schema": {"type": ["integer", "null"], "default": 1, "minimum": 1, "maximum": 500},
                    },
                    **tuning,
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "accessKey", "password": "accessSecret", "host": "Gateway URL"},
                    "placeholders": {"host": "https://market.juncdt.com"},
                },
            },
        ],
    }

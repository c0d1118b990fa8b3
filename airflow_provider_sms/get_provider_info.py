"""Provider metadata for Airflow: connection types with declarative form fields, and the classes."""

from __future__ import annotations

from typing import Any

# Bounds and defaults as in dispatch.settings (the hooks check extras with its models), written out:
# Airflow reads this in every process it starts, where building those models would cost ~80 ms.
# tests/test_settings.py checks that they agree.
_TUNING: dict[str, dict[str, Any]] = {
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Upper bound of one gateway call, reply included.",
        "schema": {"type": ["number", "null"], "default": 30, "minimum": 0.1, "maximum": 600},
    },
    "concurrency": {
        "label": "Concurrent requests",
        "description": "Requests in flight at once during a bulk send.",
        "schema": {"type": ["integer", "null"], "default": 16, "minimum": 1, "maximum": 512},
    },
    "requests_per_second": {
        "label": "Requests per second",
        "description": "Never exceeded in a bulk send (carriers block senders that burst). Empty: no limit.",
        "schema": {"type": ["number", "null"], "minimum": 0.1, "maximum": 100_000},
    },
    "max_attempts": {
        "label": "Attempts per request",
        "description": "Tries of one request on transient faults, with exponential backoff and jitter.",
        "schema": {"type": ["integer", "null"], "default": 4, "minimum": 1, "maximum": 20},
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
                        "schema": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**31},
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
                    **_TUNING,
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
                    **_TUNING,
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "accessKey", "password": "accessSecret", "host": "Gateway URL"},
                    "placeholders": {"host": "https://market.juncdt.com"},
                },
            },
        ],
    }

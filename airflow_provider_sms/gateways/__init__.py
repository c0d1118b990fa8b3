"""Gateway clients: build requests, send them with httpx, parse and classify replies. No Airflow here."""

from __future__ import annotations

from airflow_provider_sms.errors import (
    BadInputGatewayError,
    FatalGatewayError,
    GatewayCodeError,
    GatewayError,
    InvalidInputError,
    SmsProviderError,
    TransientGatewayError,
    TransportError,
    UnknownGatewayCodeError,
)
from airflow_provider_sms.gateways.models import GatewayReply

__all__ = [
    "BadInputGatewayError",
    "FatalGatewayError",
    "GatewayCodeError",
    "GatewayError",
    "GatewayReply",
    "InvalidInputError",
    "SmsProviderError",
    "TransientGatewayError",
    "TransportError",
    "UnknownGatewayCodeError",
]

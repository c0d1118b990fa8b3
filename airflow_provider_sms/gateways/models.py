"""Typed results of one gateway call."""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_provider_sms.errors import (
    BadInputGatewayError,
    FatalGatewayError,
    GatewayCodeError,
    TransientGatewayError,
    UnknownGatewayCodeError,
)
from airflow_provider_sms.protocol.codes import CodeClass


@dataclass(frozen=True, slots=True)
class GatewayReply:
    """One reply of a gateway: its verbatim code and message, their class, and the ids it carried.

    ``ids`` keeps ids as strings (``mmsid``, ``smsid``, ``num``...): they are long digit strings.
    """

    gateway: str
    method: str
    code: str
    message: str
    code_class: CodeClass
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code_class is CodeClass.SUCCESS

    def describe(self) -> str:
        return f"{self.gateway} {self.method} answered code {self.code}: {self.message}"


_BY_CLASS: dict[CodeClass, type[GatewayCodeError]] = {
    CodeClass.TRANSIENT: TransientGatewayError,
    CodeClass.FATAL: FatalGatewayError,
    CodeClass.BAD_INPUT: BadInputGatewayError,
    CodeClass.UNKNOWN: UnknownGatewayCodeError,
}


def raise_for_reply(reply: GatewayReply) -> GatewayReply:
    """Return ``reply`` when it is a success, else raise the error of its class."""
    if reply.ok:
        return reply
    raise _BY_CLASS[reply.code_class](reply)

"""Adapters from a gateway client to the engine: how recipients share a request, how one is sent."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Protocol

from airflow_provider_sms.protocol import codes
from airflow_provider_sms.protocol.codes import CodeClass

if TYPE_CHECKING:
    from collections.abc import Hashable, Sequence

    from airflow_provider_sms.dispatch.recipients import Recipient
    from airflow_provider_sms.gateways.base import GatewayClient
    from airflow_provider_sms.gateways.ihuyi import IhuyiClient
    from airflow_provider_sms.gateways.juncdt import JuncdtClient
    from airflow_provider_sms.gateways.models import GatewayReply


# A well-formed number used only to build (never send) a request, to validate the other arguments early.
_PROBE_NUMBER = "138" + "0" * 8


class BatchSender(Protocol):
    """One gateway, one message (template); the engine does the rest."""

    gateway: str
    numbers_per_request: int
    takes_params: bool

    def group_key(self, recipient: Recipient) -> Hashable:
        """Recipients with equal keys may share one request."""

    async def send(self, batch: Sequence[Recipient]) -> GatewayReply: ...

    def classify(self, reply: GatewayReply, batch: Sequence[Recipient]) -> CodeClass: ...

    def gateway_id(self, reply: GatewayReply) -> str: ...

    async def warm_up(self) -> None: ...

    async def aclose(self) -> None: ...


class _ClientSender:
    """What both senders do alike: the reply's own class, no id, the client's pool opened and closed."""

    client: GatewayClient

    def classify(self, reply: GatewayReply, batch: Sequence[Recipient]) -> CodeClass:
        return reply.code_class

    def gateway_id(self, reply: GatewayReply) -> str:
        return ""

    async def warm_up(self) -> None:
        await self.client.warm_up()

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass(eq=False)
class MmsSender(_ClientSender):
    """ihuyi ``SendMms``: every recipient gets the same template, up to N numbers per request."""

    gateway = "ihuyi"
    takes_params = False
    client: IhuyiClient
    mmsid: str
    _: KW_ONLY
    pid: int | None
    send_time: str
    numbers_per_request: int

    def __post_init__(self) -> None:
        # Refuse a bad template id or missing pid now, before the campaign starts.
        self.client.build_send_mms([_PROBE_NUMBER], self.mmsid, self.pid, self.send_time)

    def group_key(self, recipient: Recipient) -> Hashable:
        return None

    async def send(self, batch: Sequence[Recipient]) -> GatewayReply:
        return await self.client.asend_mms([r.phone for r in batch], self.mmsid, self.pid, self.send_time)

    def gateway_id(self, reply: GatewayReply) -> str:
        return reply.ids.get("mmsid", "")


@dataclass(eq=False)
class SmsSender(_ClientSender):
    """juncdt ``sendMessage``: numbers share a request only when their params are equal."""

    gateway = "juncdt"
    takes_params = True
    client: JuncdtClient
    template_code: str
    _: KW_ONLY
    sign_code: str | None
    numbers_per_request: int

    def __post_init__(self) -> None:
        self.client.build_send([_PROBE_NUMBER], self.template_code, None, self.sign_code)

    def group_key(self, recipient: Recipient) -> Hashable:
        return tuple(sorted(recipient.params.items())) if recipient.params else None

    async def send(self, batch: Sequence[Recipient]) -> GatewayReply:
        return await self.client.asend(
            [r.phone for r in batch], self.template_code, batch[0].params, self.sign_code
        )

    def classify(self, reply: GatewayReply, batch: Sequence[Recipient]) -> CodeClass:
        # Illegal words, mismatched variables or an over-long message are that recipient's fault only
        # if its own params produced them; with shared params the whole campaign would fail the same way.
        if reply.code in codes.JUNCDT_PARAM_DEPENDENT:
            return CodeClass.BAD_INPUT if all(r.personal for r in batch) else CodeClass.FATAL
        return reply.code_class

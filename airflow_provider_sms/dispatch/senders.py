"""Adapters from a gateway client to the engine: how recipients share a request, how one is sent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from airflow_provider_sms.protocol import codes
from airflow_provider_sms.protocol.codes import CodeClass

if TYPE_CHECKING:
    from collections.abc import Hashable, Sequence

    from airflow_provider_sms.dispatch.recipients import Recipient
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


class MmsSender:
    """ihuyi ``SendMms``: every recipient gets the same template, up to N numbers per request."""

    gateway = "ihuyi"
    takes_params = False

    def __init__(
        self, client: IhuyiClient, mmsid: str, *, pid: int | None, send_time: str, numbers_per_request: int
    ) -> None:
        self.client = client
        self.mmsid = mmsid
        self.pid = pid
        self.send_time = send_time
        self.numbers_per_request = numbers_per_request
        # Refuse a bad template id or missing pid now, before the campaign starts.
        client.build_send_mms([_PROBE_NUMBER], mmsid, pid, send_time)

    def group_key(self, recipient: Recipient) -> Hashable:
        return None

    async def send(self, batch: Sequence[Recipient]) -> GatewayReply:
        return await self.client.asend_mms([r.phone for r in batch], self.mmsid, self.pid, self.send_time)

    def classify(self, reply: GatewayReply, batch: Sequence[Recipient]) -> CodeClass:
        return reply.code_class

    def gateway_id(self, reply: GatewayReply) -> str:
        return reply.ids.get("mmsid", "")

    async def warm_up(self) -> None:
        await self.client.warm_up()

    async def aclose(self) -> None:
        await self.client.aclose()


class SmsSender:
    """juncdt ``sendMessage``: numbers share a request only when their params are equal."""

    gateway = "juncdt"
    takes_params = True

    def __init__(
        self, client: JuncdtClient, template_code: str, *, sign_code: str | None, numbers_per_request: int
    ) -> None:
        self.client = client
        self.template_code = template_code
        self.sign_code = sign_code
        self.numbers_per_request = numbers_per_request
        client.build_send([_PROBE_NUMBER], template_code, None, sign_code)

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

    def gateway_id(self, reply: GatewayReply) -> str:
        return ""

    async def warm_up(self) -> None:
        await self.client.warm_up()

    async def aclose(self) -> None:
        await self.client.aclose()

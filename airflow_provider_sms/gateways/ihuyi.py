"""ihuyi (互亿无线) MMS platform: ``SendMms``, ``GetNum``, ``CreateMms``. Always POST, form-encoded.

The password goes in the POST body only, never in a URL (the vendor's GET form would leak it to logs).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, cast
from urllib.parse import quote_plus, urlencode

import httpx

from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.gateways.base import GatewayClient
from airflow_provider_sms.gateways.models import GatewayReply
from airflow_provider_sms.gateways.transport import IDENTITY, fixed_headers, post_request
from airflow_provider_sms.protocol import codes
from airflow_provider_sms.protocol.replies import MalformedReply, parse_xml_fields

if TYPE_CHECKING:
    from collections.abc import Sequence
    from urllib.parse import _QuoteVia

    from airflow_provider_sms.gateways.transport import HttpSettings

DEFAULT_HOST = "http://10658.cc"
API_PATH = "/webservice/api"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", **IDENTITY}


def _quote(value: str, safe: str = "", encoding: str | None = None, errors: str | None = None) -> str:
    """``quote_plus``, byte for byte, minus its per-character loop for a list of numbers (digits and
    commas take the standard library's all-safe shortcut, then the commas are escaped)."""
    return quote_plus(value, safe + ",", encoding, errors).replace(",", "%2C")


def api_url(host: str) -> str:
    """``host`` may be a bare origin or already end with the API path."""
    host = host.rstrip("/")
    return host if host.endswith(API_PATH) else host + API_PATH


def parse_reply(method: str, table: dict[str, tuple[codes.CodeClass, str]], body: bytes) -> GatewayReply:
    """Parse an ihuyi XML reply (any root, any namespace, declared encoding) into a typed reply."""
    fields = parse_xml_fields(body)
    code = fields.pop("code")
    if not code:
        raise MalformedReply("empty <code> in reply")
    message = fields.pop("msg", "")
    return GatewayReply(
        "ihuyi", method, code, message, codes.classify(table, code), {k: v for k, v in fields.items() if v}
    )


def _parse_send(body: bytes) -> GatewayReply:
    return parse_reply("SendMms", codes.IHUYI_SEND_MMS, body)


def _parse_num(body: bytes) -> GatewayReply:
    reply = parse_reply("GetNum", codes.IHUYI_GET_NUM, body)
    if reply.ok and not reply.ids.get("num", "").lstrip("-").isdigit():
        raise MalformedReply("GetNum succeeded without a numeric <num>")
    return reply


def _parse_create(body: bytes) -> GatewayReply:
    reply = parse_reply("CreateMms", codes.IHUYI_CREATE_MMS, body)
    if reply.ok and not reply.ids.get("mmsid"):
        raise MalformedReply("CreateMms succeeded without an <mmsid>")
    return reply


class IhuyiClient(GatewayClient):
    """Client of one ihuyi account. Numbers passed here must already be normalised."""

    gateway = "ihuyi"
    id_fields = frozenset({"mmsid", "num"})

    def __init__(
        self,
        account: str,
        password: str,
        settings: HttpSettings,
        *,
        default_pid: int | None = None,
        max_connections: int = 64,
    ) -> None:
        super().__init__(settings, max_connections=max_connections)
        self.account = account
        self._password = password
        self._keep_secret(password)
        self.default_pid = default_pid
        self.url = api_url(settings.base_url)
        self._urls: dict[str, httpx.URL] = {}
        self._headers = fixed_headers(httpx.URL(self.url), FORM)

    def __repr__(self) -> str:
        return f"IhuyiClient(account={self.account!r}, url={self.url!r})"

    def _request(self, method: str, fields: dict[str, str]) -> httpx.Request:
        fields = {"account": self.account, "password": self._password, **fields}
        body = urlencode(fields, quote_via=cast("_QuoteVia", _quote))  # urlencode only passes it str
        url = self._urls.get(method)
        if url is None:  # parsed once per method: a bulk send builds thousands of requests
            url = self._urls[method] = httpx.URL(self.url, params={"method": method})
        return post_request(url, self._headers, body.encode())

    def build_send_mms(
        self, mobiles: Sequence[str], mmsid: str, pid: int | None = None, send_time: str = ""
    ) -> httpx.Request:
        """The ``SendMms`` request for already normalised ``mobiles`` (joined by ASCII commas)."""
        if not mobiles:
            raise InvalidInputError("SendMms needs at least one number")
        mmsid = str(mmsid).strip()
        if not mmsid.isdigit():
            raise InvalidInputError(f"mmsid must be the template's digit id, got {mmsid!r}")
        product = pid if pid is not None else self.default_pid
        if product is None:
            raise InvalidInputError("no product id: pass pid or set 'pid' in the ihuyi connection extras")
        return self._request(
            "SendMms",
            {"mobile": ",".join(mobiles), "mmsid": mmsid, "pid": str(int(product)), "time": send_time},
        )

    def build_get_num(self) -> httpx.Request:
        return self._request("GetNum", {})

    def build_create_mms(self, title: str, zip_bytes: bytes) -> httpx.Request:
        if not title.strip():
            raise InvalidInputError("an MMS template needs a title")
        if not zip_bytes:
            raise InvalidInputError("an MMS template needs a zip file")
        return self._request("CreateMms", {"title": title, "zipfile": base64.b64encode(zip_bytes).decode()})

    def send_mms(
        self, mobiles: Sequence[str], mmsid: str, pid: int | None = None, send_time: str = ""
    ) -> GatewayReply:
        return self.call(
            self.build_send_mms(mobiles, mmsid, pid, send_time), "SendMms", _parse_send, is_send=True
        )

    async def asend_mms(
        self, mobiles: Sequence[str], mmsid: str, pid: int | None = None, send_time: str = ""
    ) -> GatewayReply:
        return await self.acall(
            self.build_send_mms(mobiles, mmsid, pid, send_time), "SendMms", _parse_send, is_send=True
        )

    def get_num(self) -> GatewayReply:
        return self.call(self.build_get_num(), "GetNum", _parse_num, is_send=False)

    async def aget_num(self) -> GatewayReply:
        return await self.acall(self.build_get_num(), "GetNum", _parse_num, is_send=False)

    def create_mms(self, title: str, zip_bytes: bytes) -> GatewayReply:
        # Not a message to a person: a lost reply at worst leaves a duplicate template, so not "ambiguous".
        return self.call(self.build_create_mms(title, zip_bytes), "CreateMms", _parse_create, is_send=False)

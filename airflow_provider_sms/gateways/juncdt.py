"""juncdt (云极) templated SMS: ``sendMessage``, POST, JSON body; success is ``BusinessData.code 10000``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx

from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.gateways.base import GatewayClient
from airflow_provider_sms.gateways.limits import JUNCDT_NUMBERS_PER_REQUEST
from airflow_provider_sms.gateways.models import GatewayReply
from airflow_provider_sms.gateways.transport import IDENTITY, fixed_headers, post_request
from airflow_provider_sms.protocol import codes
from airflow_provider_sms.protocol.replies import MalformedReply, parse_json_object

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_provider_sms.gateways.transport import HttpSettings

DEFAULT_HOST = "https://market.juncdt.com"
API_PATH = "/smartmarket/msgService/sendMessage"
MAX_NUMBERS_PER_REQUEST = JUNCDT_NUMBERS_PER_REQUEST.maximum  # code 30027
MAX_CONTENT_CHARS = 300  # code 30017
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8", **IDENTITY}


def api_url(host: str) -> str:
    host = host.rstrip("/")
    return host if host.endswith(API_PATH) else host + API_PATH


def parse_send_reply(body: bytes) -> GatewayReply:
    """Parse the JSON reply; a reply without a code anywhere is malformed, never a success."""
    data = parse_json_object(body)
    business = data.get("BusinessData")
    exception = data.get("BusinessException")
    code: object = None
    message: object = ""
    if isinstance(business, dict) and business.get("code") is not None:
        code, message = business.get("code"), business.get("msg", "")
    elif isinstance(exception, dict) and exception.get("resultCode") is not None:
        code, message = exception.get("resultCode"), exception.get("resultMessage", "")
    if code is None or isinstance(code, (bool, float, list, dict)):
        raise MalformedReply("JSON reply without BusinessData.code")
    code_text = str(code).strip()
    ids = {"phone": str(business["phone"])} if isinstance(business, dict) and business.get("phone") else {}
    return GatewayReply(
        "juncdt",
        "sendMessage",
        code_text,
        str(message),
        codes.classify(codes.JUNCDT_SEND_MESSAGE, code_text),
        ids,
    )


class JuncdtClient(GatewayClient):
    """Client of one juncdt key pair and package code. Numbers passed here must already be normalised."""

    gateway = "juncdt"

    def __init__(
        self,
        access_key: str,
        access_secret: str,
        classification_secret: str,
        settings: HttpSettings,
        *,
        default_sign_code: str | None = None,
        max_connections: int = 64,
    ) -> None:
        super().__init__(settings, max_connections=max_connections)
        self.access_key = access_key
        self._access_secret = access_secret
        self._classification_secret = classification_secret
        self._keep_secret(access_secret, classification_secret)
        self.default_sign_code = default_sign_code
        self.url = api_url(settings.base_url)
        self._url = httpx.URL(self.url)  # parsed once: a bulk send builds thousands of requests
        self._headers = fixed_headers(self._url, JSON_HEADERS)
        # The constant part of every body, encoded once: the bulk path builds many requests.
        self._auth = {
            "accessKey": access_key,
            "accessSecret": access_secret,
            "classificationSecret": classification_secret,
        }

    def __repr__(self) -> str:
        return f"JuncdtClient(access_key={self.access_key!r}, url={self.url!r})"

    def build_send(
        self,
        phones: Sequence[str],
        template_code: str,
        params: Mapping[str, object] | None = None,
        sign_code: str | None = None,
    ) -> httpx.Request:
        """The ``sendMessage`` request; several phones are comma-joined (at most 500, same params)."""
        if not phones:
            raise InvalidInputError("sendMessage needs at least one number")
        if len(phones) > MAX_NUMBERS_PER_REQUEST:
            raise InvalidInputError(f"at most {MAX_NUMBERS_PER_REQUEST} numbers per juncdt request")
        sign = sign_code or self.default_sign_code
        if not sign:
            raise InvalidInputError(
                "no sign code: pass sign_code or set 'sign_code' in the juncdt connection"
            )
        if not str(template_code).strip():
            raise InvalidInputError("template_code is required")
        body: dict[str, object] = {
            **self._auth,
            "signCode": sign,
            "templateCode": str(template_code),
            "phone": ",".join(phones),
        }
        if params:
            body["params"] = {str(k): str(v) for k, v in params.items()}
        return self._post(body)

    def _post(self, body: dict[str, object]) -> httpx.Request:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return post_request(self._url, self._headers, content)

    def probe(self) -> GatewayReply:
        """``sendMessage`` with no phone and no template: nothing can be sent, and the code says how far
        the gateway's checks (keys, package code, sign code) got. Used by ``test_connection``."""
        body: dict[str, object] = {
            **self._auth,
            "signCode": self.default_sign_code or "",
            "templateCode": "",
            "phone": "",
        }
        return self.call(self._post(body), "sendMessage", parse_send_reply, is_send=False)

    def send(
        self,
        phones: Sequence[str],
        template_code: str,
        params: Mapping[str, object] | None = None,
        sign_code: str | None = None,
    ) -> GatewayReply:
        return self.call(
            self.build_send(phones, template_code, params, sign_code),
            "sendMessage",
            parse_send_reply,
            is_send=True,
        )

    async def asend(
        self,
        phones: Sequence[str],
        template_code: str,
        params: Mapping[str, object] | None = None,
        sign_code: str | None = None,
    ) -> GatewayReply:
        return await self.acall(
            self.build_send(phones, template_code, params, sign_code),
            "sendMessage",
            parse_send_reply,
            is_send=True,
        )

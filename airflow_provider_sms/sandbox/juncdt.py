"""The juncdt SMS protocol (docs/gateways.md): decide a code like the real gateway, reply its JSON."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from airflow_provider_sms.protocol.codes import JUNCDT_SEND_MESSAGE
from airflow_provider_sms.sandbox.asgi import Reply
from airflow_provider_sms.sandbox.state import Delivery, JuncdtAccount, SandboxState, new_id

PATH = "/smartmarket/msgService/sendMessage"
METHOD = "sendMessage"
CONTENT_TYPE = b"application/json;charset=UTF-8"
_MOBILE = re.compile(r"1[3-9]\d{9}")
_MESSAGES = {code: text.split(" ", 1)[0] for code, (_, text) in JUNCDT_SEND_MESSAGE.items()}
_MESSAGES_JSON = {code: json.dumps(text, ensure_ascii=False) for code, text in _MESSAGES.items()}
_TEMPLATE = (
    '{"BusinessData":{"code":%s,"msg":%s,"phone":%s},"Timestamps":%d,'
    '"BusinessException":{"resultCode":1000,"resultMessage":"操作成功"}}'
)
_NO_PARAMS: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class JuncdtCall:
    """A parsed request: the JSON body (None when it is not JSON at all)."""

    data: Any

    @property
    def numbers(self) -> int:
        """How many numbers the request carries, for the request log."""
        phone = self.data.get("phone") if isinstance(self.data, dict) else None
        if isinstance(phone, str):
            return sum(1 for part in phone.split(",") if part.strip())
        return 1 if isinstance(phone, int) and not isinstance(phone, bool) else 0


def parse(body: bytes) -> JuncdtCall:
    """Parse the JSON body; anything unreadable becomes ``None`` (the gateway answers 30023)."""
    try:
        return JuncdtCall(json.loads(body))
    except (ValueError, UnicodeDecodeError):
        return JuncdtCall(None)


def message(code: str) -> str:
    """The message the gateway sends with ``code``."""
    return _MESSAGES.get(code, "未知错误")


def process(state: SandboxState, call: JuncdtCall) -> Reply:
    """Answer one call: forced code, else the gateway's own checks and bookkeeping."""
    forced = state.take_forced("juncdt", METHOD)
    if forced is not None:
        code, msg = forced.code, forced.msg
    else:
        code, msg = _decide(state, call.data), None
    phone = call.data.get("phone") if isinstance(call.data, dict) else None
    return render(code, msg, phone)


def render(code: str, msg: str | None, phone: Any) -> Reply:
    """The vendor's JSON reply; ``code`` is a JSON number whenever it is digits."""
    code_json = code if code.isdigit() else json.dumps(code)
    if msg is None:
        msg_json = _MESSAGES_JSON.get(code) or json.dumps(message(code), ensure_ascii=False)
    else:
        msg_json = json.dumps(msg, ensure_ascii=False)
    phone_json = (
        f'"{phone}"' if isinstance(phone, str) and phone.isdigit() else json.dumps(phone, ensure_ascii=False)
    )
    body = _TEMPLATE % (code_json, msg_json, phone_json, int(time.time() * 1000))
    return Reply(code, body.encode(), CONTENT_TYPE)


def _decide(state: SandboxState, data: Any) -> str:
    """The checks in the order docs/gateways.md lists them; success records the deliveries."""
    if not isinstance(data, dict):
        return "30023"
    account = state.juncdt
    access_key = data.get("accessKey")
    if not access_key or not isinstance(access_key, str):
        return "30022"
    if access_key != account.access_key:
        return "30024"
    if data.get("accessSecret") != account.access_secret:
        return "30020"
    if data.get("classificationSecret") != account.classification_secret:
        return "30025"
    sign_code = data.get("signCode")
    if not sign_code:
        return "30021"
    sign = account.signs.get(sign_code) if isinstance(sign_code, str) else None
    if sign is None:
        return "30005"
    if sign.force_code:
        return sign.force_code
    template_code = data.get("templateCode")
    template = account.templates.get(template_code) if isinstance(template_code, str) else None
    if template is None:
        return "30006"
    if template.force_code:
        return template.force_code
    numbers, failed = _numbers(account, data.get("phone"))
    if failed:
        return failed
    params, failed = _params(account, data.get("params"), template.params)
    if failed:
        return failed
    if len(template.render(params)) > account.max_content_length:
        return "30017"
    if account.quota < len(numbers):
        return "30019"
    now = time.time()
    account.roll_day(now)
    sent = account.daily_sent
    wanted = Counter(numbers) if len(numbers) > 1 else {numbers[0]: 1}
    if any(sent.get(n, 0) + k > account.daily_limit for n, k in wanted.items()):
        return "30028"
    for n, k in wanted.items():
        sent[n] = sent.get(n, 0) + k
    account.quota -= len(numbers)
    request_id = new_id()
    sign_code_str = str(sign_code)
    records = (
        Delivery(
            "juncdt", n, request_id, now, template_code=template.code, sign_code=sign_code_str, params=params
        )
        for n in numbers
    )
    state.deliver(records, len(numbers), "juncdt")
    return "10000"


def _numbers(account: JuncdtAccount, phone: Any) -> tuple[list[str], str | None]:
    if isinstance(phone, int) and not isinstance(phone, bool):
        phone = str(phone)
    if phone is None or (isinstance(phone, str) and not phone.strip()):
        return [], "30010"
    if not isinstance(phone, str):
        return [], "30011"
    numbers = [part.strip() for part in phone.split(",")]
    if len(numbers) > account.max_numbers:
        return [], "30027"
    if not all(_MOBILE.fullmatch(n) for n in numbers):
        return [], "30011"
    prefixes = account.unsupported_prefixes
    if prefixes and any(n.startswith(prefixes) for n in numbers):
        return [], "30018"
    return numbers, None


def _params(account: JuncdtAccount, raw: Any, names: tuple[str, ...]) -> tuple[dict[str, str], str | None]:
    if raw is None:
        raw = _NO_PARAMS
    if not isinstance(raw, dict) or len(raw) != len(names) or not all(name in raw for name in names):
        return {}, "30014"
    params: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return {}, "30014"
        params[name] = value if isinstance(value, str) else str(value)
    words = account.illegal_words
    if words and any(word in value for value in params.values() for word in words):
        return {}, "30013"
    return params, None

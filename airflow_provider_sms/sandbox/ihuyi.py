"""The ihuyi MMS protocol (docs/gateways.md): decide a code like the real gateway, reply its XML."""

from __future__ import annotations

import base64
import binascii
import io
import re
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from airflow_provider_sms.protocol.codes import IHUYI_CREATE_MMS, IHUYI_GET_NUM, IHUYI_SEND_MMS
from airflow_provider_sms.sandbox.asgi import Reply
from airflow_provider_sms.sandbox.state import (
    Delivery,
    FaultSettings,
    IhuyiAccount,
    IhuyiTemplate,
    SandboxState,
    new_id,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

PATH = "/webservice/api"
NAMESPACE = "http://106.ihuyi.cn/"
_MOBILE = re.compile(r"1[3-9]\d{9}")
_SEND_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_MAX_SMIL_BYTES = 1 << 20


def _chinese(table: Mapping[str, tuple[object, str]]) -> dict[str, str]:
    """The vendor's own words: the text before the first space of each table entry."""
    return {code: text.split(" ", 1)[0] for code, (_, text) in table.items()}


_MESSAGES = {
    "SendMms": _chinese(IHUYI_SEND_MMS),
    "GetNum": _chinese(IHUYI_GET_NUM),
    "CreateMms": _chinese(IHUYI_CREATE_MMS),
}
# Root element and the id element of each method's reply.
_SHAPES = {
    "SendMms": ("SubmitResult", "mmsid"),
    "GetNum": ("GetNumResult", "num"),
    "CreateMms": ("SubmitResult", "mmsid"),
}
METHODS = frozenset(_SHAPES)


@dataclass(frozen=True, slots=True)
class IhuyiCall:
    """A parsed request: the method (from the query string) and the form fields (first values)."""

    method: str
    fields: dict[str, str]

    @property
    def numbers(self) -> int:
        """How many numbers the request carries, for the request log."""
        mobile = self.fields.get("mobile", "")
        return sum(1 for part in mobile.split(",") if part.strip()) if mobile else 0


def parse(query_string: bytes, body: bytes) -> IhuyiCall | None:
    """Parse ``?method=...`` and the urlencoded form; None for an unknown method (HTTP 404)."""
    query = parse_qs(query_string.decode("latin-1"))
    method = query.get("method", [""])[0]
    if method not in METHODS:
        return None
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True) if body else {}
    return IhuyiCall(method, {key: values[0] for key, values in form.items()})


def message(method: str, code: str) -> str:
    """The message the gateway sends with ``code`` for ``method``."""
    return _MESSAGES[method].get(code) or _MESSAGES["SendMms"].get(code) or "未知错误"


def process(state: SandboxState, call: IhuyiCall) -> Reply:
    """Answer one call: forced code, else the gateway's own checks and bookkeeping."""
    method = call.method
    forced = state.take_forced("ihuyi", method)
    if forced is not None:
        code, msg = forced.code, forced.msg
        value = _success_value(state, method) if code == "2" else "0"
    else:
        code, value = _decide(state, call)
        msg = None
    return render(method, code, msg if msg is not None else message(method, code), value, state.faults)


def _success_value(state: SandboxState, method: str) -> str:
    return str(state.ihuyi.balance) if method == "GetNum" else new_id()


def _auth(account: IhuyiAccount, fields: dict[str, str]) -> str | None:
    name = fields.get("account", "")
    password = fields.get("password", "")
    if not name:
        return "401"
    if not password:
        return "402"
    if name != account.account or password != account.password:
        return "405"
    if account.ip_blocked:
        return "400"
    if account.frozen:
        return "4050"
    return None


def _decide(state: SandboxState, call: IhuyiCall) -> tuple[str, str]:
    account = state.ihuyi
    failed = _auth(account, call.fields)
    if failed:
        return failed, "0"
    if call.method == "GetNum":
        return "2", str(account.balance)
    if call.method == "CreateMms":
        return _create_mms(account, call.fields)
    return _send_mms(state, account, call.fields)


def _send_mms(state: SandboxState, account: IhuyiAccount, fields: dict[str, str]) -> tuple[str, str]:
    mobile = fields.get("mobile", "")
    if not mobile.strip():
        return "403", "0"
    pid = fields.get("pid", "").strip()
    if not pid:
        return "406", "0"
    if not pid.isdigit() or int(pid) not in account.product_ids:
        return "4060", "0"
    mmsid = fields.get("mmsid", "").strip()
    template = account.templates.get(mmsid) if mmsid else None
    if template is None:
        return "404", "0"
    if template.force_code:
        return template.force_code, "0"
    send_time = fields.get("time", "").strip()
    if send_time and not _valid_time(send_time):
        return "0", "0"
    blacklist = account.blacklist
    numbers = [n for n in (part.strip() for part in mobile.split(",")) if _MOBILE.fullmatch(n)]
    if blacklist:
        numbers = [n for n in numbers if n not in blacklist]
    if not numbers:
        return "409", "0"
    if account.balance < len(numbers):
        return "4051", "0"
    send_id = new_id()
    account.balance -= len(numbers)
    now = time.time()
    records = (Delivery("ihuyi", n, send_id, now, mmsid=mmsid, send_time=send_time) for n in numbers)
    state.deliver(records, len(numbers), "ihuyi")
    return "2", send_id


def _valid_time(text: str) -> bool:
    if not _SEND_TIME.fullmatch(text):
        return False
    try:
        datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return True


def _create_mms(account: IhuyiAccount, fields: dict[str, str]) -> tuple[str, str]:
    encoded = fields.get("zipfile", "").strip().replace("\r", "").replace("\n", "")
    if not encoded:
        return "4040", "0"
    try:
        raw = base64.b64decode(encoded, validate=True)
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (binascii.Error, ValueError, zipfile.BadZipFile):
        return "406", "0"
    with archive:
        names = archive.namelist()
        smil = next((n for n in names if n.lower().endswith(".smil")), None)
        if smil is None or not _smil_ok(archive, smil, set(names)):
            return "4060", "0"
    mmsid = new_id()
    files = tuple(n for n in names if n != smil)
    account.templates[mmsid] = IhuyiTemplate(mmsid, fields.get("title", ""), files)
    return "2", mmsid


def _smil_ok(archive: zipfile.ZipFile, name: str, names: set[str]) -> bool:
    """Well-formed SMIL (no DTD tricks) whose every ``src`` names a file of the zip."""
    try:
        info = archive.getinfo(name)
        if info.file_size > _MAX_SMIL_BYTES:
            return False
        root = SafeET.fromstring(archive.read(info), forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException, zipfile.BadZipFile, KeyError, ValueError, OSError):
        return False
    if root.tag.rsplit("}", 1)[-1].lower() != "smil":
        return False
    return all(element.get("src") in names for element in root.iter() if element.get("src") is not None)


def render(method: str, code: str, msg: str, value: str, faults: FaultSettings) -> Reply:
    """The vendor's XML reply, in the namespace style and encoding the fault settings ask for."""
    root, tag = _SHAPES[method]
    text = escape(msg)
    shown = escape(code)
    if faults.ihuyi_prefixed_namespace:
        xml = (
            f'<ns0:{root} xmlns:ns0="{NAMESPACE}"><ns0:code>{shown}</ns0:code><ns0:msg>{text}</ns0:msg>'
            f"<ns0:{tag}>{value}</ns0:{tag}></ns0:{root}>"
        )
    elif faults.ihuyi_namespace:
        xml = (
            f'<{root} xmlns="{NAMESPACE}"><code>{shown}</code><msg>{text}</msg>'
            f"<{tag}>{value}</{tag}></{root}>"
        )
    else:
        xml = f"<{root}><code>{shown}</code><msg>{text}</msg><{tag}>{value}</{tag}></{root}>"
    if faults.ihuyi_encoding.lower() == "gbk":
        body = f'<?xml version="1.0" encoding="gbk"?>\n{xml}'.encode("gbk", "xmlcharrefreplace")
        return Reply(code, body, b"text/xml; charset=gbk")
    return Reply(code, f'<?xml version="1.0" encoding="utf-8"?>\n{xml}'.encode(), b"text/xml; charset=utf-8")

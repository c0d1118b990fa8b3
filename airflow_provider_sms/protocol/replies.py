"""Parse gateway replies. Anything that is not the expected document is a :class:`MalformedReply`."""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._\-]+)[\"'][^>]*\?>", re.I)
_ANY_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")


class MalformedReply(ValueError):
    """The gateway answered with something that is not its documented reply (HTML page, empty, cut...)."""


def _decode_xml(body: bytes) -> str:
    """Decode with the encoding the XML declaration names (GBK has been seen), else UTF-8."""
    encoding = "utf-8"
    match = _XML_DECL.match(body)
    if match:
        encoding = match.group(1).decode("ascii")
    try:
        codecs.lookup(encoding)
    except LookupError:
        # Not chained: the lookup's own message quotes the reply's text, which may echo anything.
        raise MalformedReply(f"reply declares an unknown encoding {encoding!r}") from None
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise MalformedReply(f"reply is not valid {encoding}") from exc
    # The text is decoded now; a declaration naming another encoding would confuse the parser.
    return _ANY_DECL.sub("", text, count=1).lstrip("\ufeff")


def parse_xml_fields(body: bytes) -> dict[str, str]:
    """Return ``{local name: text}`` of the root's children, whatever the root and namespace.

    Refuses DTDs and entities (XML bombs) through defusedxml.
    """
    if not body.strip():
        raise MalformedReply("empty reply")
    text = _decode_xml(body)
    try:
        root = SafeET.fromstring(text, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MalformedReply(f"reply refused: {type(exc).__name__} (DTD or entity in XML)") from exc
    except SafeET.ParseError as exc:
        raise MalformedReply(f"reply is not well-formed XML ({exc})") from exc
    fields: dict[str, str] = {}
    for child in root:
        tag = child.tag if isinstance(child.tag, str) else ""
        local = tag.rsplit("}", 1)[-1]
        fields[local] = (child.text or "").strip()
    if "code" not in fields:
        raise MalformedReply(f"XML reply without a <code> element (root {root.tag.rsplit('}', 1)[-1]!r})")
    return fields


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object reply (strict: no trailing commas, an object at the top)."""
    if not body.strip():
        raise MalformedReply("empty reply")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedReply(f"reply is not valid JSON ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise MalformedReply("JSON reply is not an object")
    return data

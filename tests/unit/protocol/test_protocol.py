"""Pure protocol helpers: numbers, send times, reply parsing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_provider_sms.protocol import phones
from airflow_provider_sms.protocol.codes import (
    IHUYI_SEND_MMS,
    JUNCDT_SEND_MESSAGE,
    CodeClass,
    classify,
)
from airflow_provider_sms.protocol.replies import MalformedReply, parse_json_object, parse_xml_fields
from airflow_provider_sms.protocol.sendtime import BEIJING, format_send_time
from tests.helpers import raises


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812348000", "13812348000"),
        ("+86 138-1234-8000", "13812348000"),
        ("0086 13812348000", "13812348000"),
        ("8613812348000", "13812348000"),
        (13812348000, "13812348000"),
        (" 199 0000 1111 ", "19900001111"),
        ("+86-138-0013-8000", "13800138000"),
        ("(0086)13800138000", "13800138000"),
        ("(+86) 138 0013 8000", "13800138000"),
        ("86 138 0013 8000", "13800138000"),
        ("13800138000.0", "13800138000"),  # a number column exported as floats (Excel, pandas)
        ("13800138000.00", "13800138000"),
        ("8613800138000.0", "13800138000"),
    ],
)
def test_normalize_accepts_documented_forms(raw: object, expected: str) -> None:
    assert phones.normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abcdefghijk", "characters"),
        ("1381234800", "10 digits"),
        ("138123480001", "12 digits"),
        ("01012345678", "not a mainland mobile"),
        ("12812348000", "not a mainland mobile"),
        ("138１２３４８０００", "not a mainland mobile"),  # full-width digits: no gateway takes them
        ("+1 415 555 0100", "digits"),
        ("", "empty"),
        (None, "empty"),
        (1.3812348e10, "float"),
        ("1380013800.0", "10 digits"),  # a 10-digit typo exported as a float: not 13800138000
        ("138001380.00", "9 digits"),
        ("13800138000.5", "characters other than digits"),
        ("1.3800138E+10", "characters other than digits"),
        ("138.0013.8000", "characters other than digits"),  # "." is not a separator
        # Separators that would join fragments into a number nobody wrote.
        ("1380013800 0", "where a number is not split"),
        ("138001 38000", "where a number is not split"),
        ("1380-013-8000", "where a number is not split"),
        ("+86 1380013800-0", "where a number is not split"),
        ("(13800138000)", "where a number is not split"),
        ("138 0013 8000 -", "where a number is not split"),
    ],
)
def test_normalize_refuses_with_reason_and_never_shows_the_number(raw: object, reason: str) -> None:
    with raises(phones.InvalidPhoneNumber) as info:
        phones.normalize(raw)
    assert reason in str(info.value)
    if isinstance(raw, str) and len(raw) > 7:
        assert raw not in str(info.value)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("bad value ['13800138000', '+8613900139000']", "bad value ['138****8000', '+86*******9000']"),
        ("号码008613700137000无效", "号码008********7000无效"),
        ("send id 1795451048006006377, ti 01a2-a13812345678",) * 2,
        ("already 138****8000", "already 138****8000"),
    ],
)
def test_mask_in_text_masks_numbers_and_leaves_ids(text: str, masked: str) -> None:
    assert phones.mask_in_text(text) == masked


def test_mask_hides_the_middle() -> None:
    assert phones.mask("13812348000") == "138****8000"
    assert phones.mask("+8613812348000") == "+86*******8000"
    assert phones.mask("6512345") == "*****45"  # a short number: no more than its last two shown
    assert phones.mask("1381234800") == "********00"
    assert phones.mask("123") == "***"


def test_send_time_forms() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=BEIJING)
    assert format_send_time(None, now=now) == ""
    assert format_send_time("2026-11-24 08:00:00", now=now) == "2026-11-24 08:00:00"
    utc_evening = datetime(2026, 11, 23, 16, 0, tzinfo=timezone.utc)
    assert format_send_time(utc_evening, now=now) == "2026-11-24 00:00:00"
    with raises(ValueError, match="in the past"):
        format_send_time("2026-11-22 08:00:00", now=now)
    with raises(ValueError, match="YYYY-MM-DD HH:MM:SS"):
        format_send_time("24/11/2026 08:00", now=now)


def test_xml_any_root_any_namespace_and_gbk() -> None:
    plain = b"<R><code>2</code><msg>ok</msg><num>19455</num></R>"
    ns = (
        '<?xml version="1.0" encoding="utf-8"?><GetNumResult xmlns="http://106.ihuyi.cn/">'
        "<code>2</code><msg>查询成功</msg><num>19455</num></GetNumResult>"
    ).encode()
    gbk = (
        '<?xml version="1.0" encoding="gbk"?><SubmitResult xmlns="http://106.ihuyi.cn/">'
        "<code>4051</code><msg>剩余条数不足</msg></SubmitResult>"
    ).encode("gbk")
    assert parse_xml_fields(plain)["num"] == "19455"
    assert parse_xml_fields(ns) == {"code": "2", "msg": "查询成功", "num": "19455"}
    assert parse_xml_fields(gbk)["msg"] == "剩余条数不足"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b"<SubmitResult><code>2</code><msg>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><r><code>&a;</code></r>',
        b"<?xml version='1.0' encoding='klingon'?><r><code>2</code></r>",
    ],
)
def test_xml_that_is_not_the_reply_is_malformed(body: bytes) -> None:
    with raises(MalformedReply):
        parse_xml_fields(body)


def test_json_reply_is_strict() -> None:
    with raises(MalformedReply):
        parse_json_object(b'{"BusinessData": {"code": 10000,},}')
    with raises(MalformedReply):
        parse_json_object(b"[1]")


def test_code_tables_classify_and_unknown() -> None:
    assert classify(IHUYI_SEND_MMS, "4051") is CodeClass.FATAL
    assert classify(IHUYI_SEND_MMS, "409") is CodeClass.BAD_INPUT
    assert classify(JUNCDT_SEND_MESSAGE, "30028") is CodeClass.BAD_INPUT
    assert classify(JUNCDT_SEND_MESSAGE, "12345") is CodeClass.UNKNOWN

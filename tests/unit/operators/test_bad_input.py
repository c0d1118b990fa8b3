"""Bad input: each case gets a clear error (or a stated rejection) before anything is sent.

Table-driven: every case names what a user did wrong and the words the error must contain; after
each one, the sandbox must have received no request at all.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.dispatch.settings import SendSettings
from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.hooks.juncdt import JuncdtHook
from airflow_provider_sms.protocol.mms_package import MmsPackageError, build_package, validate_package
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import control, ihuyi_conn, juncdt_conn, raises, set_conn

GIF = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b")
SMIL = '<smil><body><par dur="5s"><img src="1.gif"/></par></body></smil>'


def zip_of(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def mms(mobiles: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: IhuyiHook().send_mms(mobiles, kwargs.pop("mmsid", "1001"), **kwargs)


def sms(phone: Any, template: str = "TPL_CODE", params: Any = None) -> Callable[[], Any]:
    return lambda: JuncdtHook().send_sms(phone, template, params or {"code": "1"})


def bulk_sms(rows: list[Any], **kwargs: Any) -> Callable[[], Any]:
    """Bulk sends set bad rows aside as rejected; with every row bad, no request goes out."""

    def run() -> Any:
        summary = JuncdtHook().send_bulk(rows, kwargs.pop("template", "TPL_NOTICE"), **kwargs)
        assert summary.counts["accepted"] == 0
        raise InvalidInputError("; ".join(summary.reasons))

    return run


def bulk(hook: str, recipients: Any, **settings: Any) -> Callable[[], Any]:
    """A bulk send with task-level settings (what an operator passes the hook)."""
    from airflow_provider_sms.dispatch.settings import send_settings

    if hook == "ihuyi":
        return lambda: IhuyiHook().send_bulk(recipients, "1001", bulk=send_settings(settings))
    return lambda: JuncdtHook().send_bulk(recipients, "TPL_CODE", {"code": "1"}, bulk=send_settings(settings))


def operator_settings(**arguments: Any) -> Callable[[], Any]:
    """What an operator makes of its (possibly templated) arguments, before anything is sent."""
    from airflow_provider_sms.operators.sms import SmsSendOperator

    return lambda: SmsSendOperator(
        task_id="t", recipients="13812348000", template_code="TPL_CODE", **arguments
    ).bulk_settings()


def upload(data: bytes) -> Callable[[], Any]:
    return lambda: validate_package(data)


CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("letters", mms("abcdefghijk"), "characters other than digits"),
    ("10 digits", mms("1381234800"), "10 digits"),
    ("12 digits", mms("138123480001"), "12 digits"),
    ("landline", mms("01012345678"), "not a mainland mobile"),
    ("landline with dash", mms("010-1234-5678"), "not a mainland mobile"),
    ("US number", mms("+1 415 555 0100"), "digits"),
    ("UK number", mms("+44 7911 123456"), "digits"),
    ("12x prefix", mms("12812345678"), "not a mainland mobile"),
    ("float number", mms([1.3812348e10]), "floats"),
    ("None audience", mms(None), "no phone number"),
    ("empty audience", mms([]), "no phone number"),
    ("blank string audience", mms(" , "), "no phone number"),
    ("one bad among good", mms(["13812348000", "1234"]), "1 invalid phone number"),
    ("juncdt letters", sms("phone-number"), "characters other than digits"),
    ("send time in the past", mms("13812348000", send_time="2020-01-01 08:00:00"), "in the past"),
    ("send time wrong format", mms("13812348000", send_time="2030/01/01 08:00"), "YYYY-MM-DD HH:MM:SS"),
    ("send time not a time", mms("13812348000", send_time="tomorrow"), "YYYY-MM-DD HH:MM:SS"),
    ("template id not digits", mms("13812348000", mmsid="promo"), "digit id"),
    ("template id empty", mms("13812348000", mmsid=""), "digit id"),
    ("empty template code", sms("13812348000", template=""), "template_code is required"),
    (
        "params missing",
        bulk_sms([{"phone": "13812348000", "params": {"name": "a"}}], param_names=["name", "order"]),
        "missing order",
    ),
    (
        "params extra",
        bulk_sms(
            [{"phone": "13812348000", "params": {"name": "a", "order": "1", "x": "y"}}],
            param_names=["name", "order"],
        ),
        "unexpected x",
    ),
    ("params not a mapping", bulk_sms([{"phone": "13812348000", "params": ["a"]}]), "mapping"),
    (
        "content over 300 chars",
        bulk_sms(
            [{"phone": "13812348000", "params": {"name": "长" * 400, "order": "1"}}],
            template_text="${name}您好，订单${order}已发货",
            bulk=SendSettings(purpose="notification"),  # a shipping notice: no opt-out text needed
        ),
        "300",
    ),
    ("audience all invalid", bulk_sms(["bad", "0101234567"], template="TPL_PLAIN"), "invalid_input"),
    ("template not a zip", upload(b"hello, I am not a zip"), "zip"),
    ("zip with ../ name", upload(zip_of({"../evil.gif": GIF, "a.smil": SMIL})), "evil"),
    (
        "oversized frame",
        lambda: validate_package(zip_of({"1.gif": GIF + bytes(5000), "a.smil": SMIL}), max_bytes=2000),
        "1.gif",
    ),
    (
        "juncdt: 600 numbers per request",
        bulk("juncdt", ["13812348000"] * 2, numbers_per_request=600),
        "numbers_per_request must be between 1 and 500",
    ),
    (
        "ihuyi: 1600 numbers per request",
        bulk("ihuyi", ["13812348000"], numbers_per_request=1600),
        "numbers_per_request must be between 1 and 1000",
    ),
    ("a path that is not .csv or .jsonl", bulk("juncdt", "/data/audience.txt"), "name it .csv"),
    ("a compressed file", bulk("ihuyi", "s3://bucket/audience.csv.gz"), "compressed files are not read"),
    (
        "unknown file encoding",
        bulk("juncdt", "/data/audience.csv", encoding="gbk2312"),
        "encoding must be a text encoding",
    ),
    (
        "shared param None",
        bulk_sms(["13812348000"], template="TPL_CODE", params={"code": None}),
        "'code' is empty",
    ),
    ("dry_run typo", operator_settings(dry_run="ture"), "dry_run must be true or false, got 'ture'"),
    (
        "rate not a number",
        operator_settings(requests_per_second="fast"),
        "requests_per_second must be a number",
    ),
    ("concurrency not whole", operator_settings(concurrency="x1"), "concurrency must be a whole number"),
    ("concurrency too high", operator_settings(concurrency=10_000), "concurrency must be between 1 and 512"),
    (
        "heartbeat over half the lease",
        operator_settings(lease_seconds=10, heartbeat_seconds=6),
        "heartbeat_seconds must be at most half of lease_seconds",
    ),
    ("no SMIL", upload(zip_of({"1.gif": GIF})), "smil"),
    ("SMIL names a missing frame", upload(zip_of({"2.gif": GIF, "a.smil": SMIL})), "1.gif"),
    ("frames folder missing", lambda: build_package("/nonexistent/frames"), "frames"),
]


@pytest.mark.parametrize(("case", "action", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_sending(
    connections: SandboxServer, case: str, action: Callable[[], Any], words: str
) -> None:
    with raises((InvalidInputError, MmsPackageError, ValueError)) as info:
        action()
    assert words.lower() in str(info.value).lower(), str(info.value)
    assert "13812348000" not in str(info.value)  # numbers are masked in errors too
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []


CONNECTION_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("wrong connection type", {"conn_type": "juncdt"}, "expected 'ihuyi'"),
    ("missing password", {"password": None}, "no password"),
    ("missing account", {"login": None}, "no login"),
    (
        "numbers_per_request not a number",
        {"extra": {"numbers_per_request": "many"}},
        "must be a whole number",
    ),
    ("numbers_per_request too large", {"extra": {"numbers_per_request": 5000}}, "between"),
    ("host without scheme is refused when odd", {"host": "ftp://10658.cc"}, "http"),
]


@pytest.mark.parametrize(("case", "change", "words"), CONNECTION_CASES, ids=[c[0] for c in CONNECTION_CASES])
def test_bad_connection_is_refused(
    connections: SandboxServer, monkeypatch: pytest.MonkeyPatch, case: str, change: dict[str, Any], words: str
) -> None:
    conn = ihuyi_conn(connections.url) | change
    set_conn(monkeypatch, "ihuyi_broken", conn)
    with raises((InvalidInputError, ValueError)) as info:
        IhuyiHook("ihuyi_broken").send_mms("13812348000", "1001")
    assert words in str(info.value)
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []


def test_juncdt_missing_package_code_and_too_many_per_request(
    connections: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = juncdt_conn(connections.url)
    conn["extra"] = {k: v for k, v in conn["extra"].items() if k != "classification_secret"}
    set_conn(monkeypatch, "juncdt_nopkg", conn)
    with raises(InvalidInputError, match="classification_secret"):
        JuncdtHook("juncdt_nopkg").send_sms("13812348000", "TPL_CODE", {"code": "1"})
    set_conn(monkeypatch, "juncdt_501", juncdt_conn(connections.url, numbers_per_request=501))
    with raises(InvalidInputError, match="between 1 and 500"):
        JuncdtHook("juncdt_501").send_sms("13812348000", "TPL_CODE", {"code": "1"})


def test_negative_min_balance_is_refused() -> None:
    from airflow_provider_sms.sensors.balance import parse_min_balance

    with raises(ValueError, match="0 or more"):
        parse_min_balance(-5)
    with raises(ValueError, match="whole number"):
        parse_min_balance("lots")


def test_csv_without_phone_column(connections: SandboxServer, tmp_path: Path) -> None:
    source = tmp_path / "audience.csv"
    source.write_text("name\nWang\n", encoding="utf-8")
    with raises(InvalidInputError, match="column named"):
        JuncdtHook().send_bulk(str(source), "TPL_PLAIN")
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []

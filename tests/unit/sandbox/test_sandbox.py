"""The sandbox gateway over real loopback sockets, with plain httpx (not the project's clients)."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from defusedxml import ElementTree as SafeET

from airflow_provider_sms.sandbox.server import SandboxServer
from airflow_provider_sms.sandbox.state import (
    IHUYI_ACCOUNT,
    IHUYI_BALANCE,
    IHUYI_PASSWORD,
    JUNCDT_ACCESS_KEY,
    JUNCDT_ACCESS_SECRET,
    JUNCDT_PACKAGE_CODE,
    JUNCDT_QUOTA,
    FaultSettings,
    SandboxState,
)
from tests.helpers import raises

IHUYI = "/webservice/api"
JUNCDT = "/smartmarket/msgService/sendMessage"
NS = "{http://106.ihuyi.cn/}"
A, B, C = "13800138000", "13900139000", "15000150000"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as running:
        yield running


@pytest.fixture
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    """A client on the sandbox, which is reset to its defaults first."""
    with httpx.Client(base_url=server.url, timeout=5) as client:
        client.post("/_sandbox/reset").raise_for_status()
        yield client


def ctl(http: httpx.Client, method: str, path: str, body: Any = None) -> Any:
    response = http.request(method, "/_sandbox" + path, json=body)
    response.raise_for_status()
    return response.json()


def ihuyi(http: httpx.Client, method: str = "SendMms", **fields: str) -> httpx.Response:
    form = {"account": IHUYI_ACCOUNT, "password": IHUYI_PASSWORD}
    if method == "SendMms":
        form.update({"mobile": A, "mmsid": "1001", "pid": "1", "time": ""})
    form.update(fields)
    return http.post(IHUYI, params={"method": method}, data=form)


def xml(response: httpx.Response) -> dict[str, str]:
    """``{local name: text}`` of the reply's root children, plus the root's local name."""
    declared = re.match(rb'<\?xml[^>]*encoding="([^"]+)"\?>', response.content)
    encoding = declared.group(1).decode() if declared else "utf-8"
    text = re.sub(r"^<\?xml[^>]*\?>", "", response.content.decode(encoding))  # expat has no GBK
    root = SafeET.fromstring(text)
    fields = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in root}
    return {"root": root.tag.rsplit("}", 1)[-1], **fields}


def balance_query_stream(http: httpx.Client) -> AbstractContextManager[httpx.Response]:
    """A GetNum request whose reply body is read as it arrives (for the hostile-reply faults)."""
    form = {"account": IHUYI_ACCOUNT, "password": IHUYI_PASSWORD}
    return http.stream("POST", IHUYI, params={"method": "GetNum"}, data=form)


def code_of(response: httpx.Response) -> str:
    return xml(response)["code"]


def juncdt(http: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "accessKey": JUNCDT_ACCESS_KEY,
        "accessSecret": JUNCDT_ACCESS_SECRET,
        "classificationSecret": JUNCDT_PACKAGE_CODE,
        "signCode": "SIGN01",
        "templateCode": "TPL_CODE",
        "phone": A,
        "params": {"code": "1234"},
    }
    body.update(overrides)
    body = {k: v for k, v in body.items() if v is not None}
    response = http.post(JUNCDT, json=body)
    assert response.status_code == 200
    return dict(response.json())


def jcode(http: httpx.Client, **overrides: Any) -> int:
    return int(juncdt(http, **overrides)["BusinessData"]["code"])


def deliveries(http: httpx.Client, gateway: str | None = None) -> list[dict[str, Any]]:
    params = {"gateway": gateway} if gateway else {}
    response = http.get("/_sandbox/deliveries", params=params)
    response.raise_for_status()
    return list(response.json()["deliveries"])


def requests_log(http: httpx.Client) -> list[dict[str, Any]]:
    return list(ctl(http, "GET", "/requests")["requests"])


def balance(http: httpx.Client) -> int:
    return int(ctl(http, "GET", "/state")["ihuyi"]["balance"])


def zip_b64(files: dict[str, str | bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return base64.b64encode(buffer.getvalue()).decode()


SMIL = (
    '<smil><head><layout/></head><body><par dur="5s"><img src="1.gif"/><text src="1.txt"/></par></body>'
    "</smil>"
)


# ihuyi ---------------------------------------------------------------------------------------------


def test_send_mms_success_reply_is_the_vendors_xml(http: httpx.Client) -> None:
    response = ihuyi(http, mobile=f"{A},{B}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.startswith(
        '<?xml version="1.0" encoding="utf-8"?>\n<SubmitResult xmlns="http://106.ihuyi.cn/"><code>2</code>'
        "<msg>提交成功</msg><mmsid>"
    )
    fields = xml(response)
    assert fields["root"] == "SubmitResult" and re.fullmatch(r"\d{19}", fields["mmsid"])
    sent = deliveries(http, "ihuyi")
    assert [d["number"] for d in sent] == [A, B]
    assert {d["mmsid"] for d in sent} == {"1001"} and {d["request_id"] for d in sent} == {fields["mmsid"]}
    assert balance(http) == IHUYI_BALANCE - 2


def test_get_num_reports_the_balance(http: httpx.Client) -> None:
    ctl(http, "POST", "/accounts", {"ihuyi": {"balance": 19455}})
    response = ihuyi(http, "GetNum")
    assert response.text == (
        '<?xml version="1.0" encoding="utf-8"?>\n<GetNumResult xmlns="http://106.ihuyi.cn/"><code>2</code>'
        "<msg>查询成功</msg><num>19455</num></GetNumResult>"
    )
    assert code_of(ihuyi(http, "GetNum", password="nope")) == "405"
    assert code_of(ihuyi(http, "GetNum", account="")) == "401"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"account": ""}, "401"),
        ({"password": ""}, "402"),
        ({"password": "wrong"}, "405"),
        ({"mobile": ""}, "403"),
        ({"pid": ""}, "406"),
        ({"pid": "7"}, "4060"),
        ({"mmsid": ""}, "404"),
        ({"mmsid": "999"}, "404"),
        ({"time": "2030-13-01 25:00"}, "0"),
        ({"mobile": "12345,abc"}, "409"),
    ],
)
def test_send_mms_error_codes(http: httpx.Client, fields: dict[str, str], code: str) -> None:
    fields_ = xml(ihuyi(http, **fields))
    assert fields_["code"] == code
    assert fields_["msg"] and " " not in fields_["msg"]  # the Chinese words only
    assert deliveries(http) == [] and balance(http) == IHUYI_BALANCE


def test_account_flags_and_template_flags(http: httpx.Client, server: SandboxServer) -> None:
    ctl(http, "POST", "/accounts", {"ihuyi": {"ip_blocked": True}})
    assert code_of(ihuyi(http)) == "400"
    ctl(http, "POST", "/accounts", {"ihuyi": {"ip_blocked": False, "frozen": True}})
    assert xml(ihuyi(http)) | {"mmsid": ""} == {
        "root": "SubmitResult",
        "code": "4050",
        "msg": "账号被冻结",
        "mmsid": "",
    }
    ctl(
        http, "POST", "/accounts", {"ihuyi": {"frozen": False, "templates": {"1001": {"force_code": "4070"}}}}
    )
    assert code_of(ihuyi(http)) == "4070"
    server.state.ihuyi.templates["1001"].force_code = "407"  # the live state, altered in-process
    assert code_of(ihuyi(http)) == "407"
    assert deliveries(http) == []


def test_blacklist_and_malformed_numbers_are_dropped(http: httpx.Client) -> None:
    ctl(http, "POST", "/accounts", {"ihuyi": {"blacklist": [B]}})
    assert code_of(ihuyi(http, mobile=f"{A},{B},1234,{C}")) == "2"
    assert [d["number"] for d in deliveries(http)] == [A, C]
    assert balance(http) == IHUYI_BALANCE - 2
    assert code_of(ihuyi(http, mobile=B)) == "409"


def test_balance_too_low_sends_nothing(http: httpx.Client) -> None:
    ctl(http, "POST", "/accounts", {"ihuyi": {"balance": 2}})
    assert code_of(ihuyi(http, mobile=f"{A},{B},{C}")) == "4051"
    assert balance(http) == 2 and deliveries(http) == []
    assert code_of(ihuyi(http, mobile=f"{A},{B}")) == "2"
    assert balance(http) == 0


def test_scheduled_send_keeps_the_time(http: httpx.Client) -> None:
    assert code_of(ihuyi(http, time="2030-07-30 12:30:00")) == "2"
    assert deliveries(http)[0]["send_time"] == "2030-07-30 12:30:00"


def test_only_post_and_known_methods(http: httpx.Client) -> None:
    query = {"method": "GetNum", "account": IHUYI_ACCOUNT, "password": IHUYI_PASSWORD}
    assert http.get(IHUYI, params=query).status_code == 405
    assert http.post(IHUYI, params={"method": "SendSms"}, data={"a": "b"}).status_code == 404
    assert http.post(IHUYI, data={"account": IHUYI_ACCOUNT}).status_code == 404
    assert requests_log(http) == []


@pytest.mark.parametrize(
    ("shape", "start"),
    [
        (
            {"ihuyi_namespace": False},
            '<?xml version="1.0" encoding="utf-8"?>\n<SubmitResult><code>4051</code>',
        ),
        (
            {"ihuyi_prefixed_namespace": True},
            '<?xml version="1.0" encoding="utf-8"?>\n<ns0:SubmitResult xmlns:ns0="http://106.ihuyi.cn/">'
            "<ns0:code>4051</ns0:code><ns0:msg>剩余条数不足</ns0:msg>",
        ),
    ],
)
def test_reply_namespace_options(http: httpx.Client, shape: dict[str, bool], start: str) -> None:
    ctl(http, "POST", "/faults", shape)
    ctl(http, "POST", "/accounts", {"ihuyi": {"balance": 0}})
    response = ihuyi(http)
    assert response.text.startswith(start)
    assert xml(response)["msg"] == "剩余条数不足"


def test_reply_in_gbk(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"ihuyi_encoding": "gbk"})
    response = ihuyi(http, "GetNum")
    assert response.content.startswith(b'<?xml version="1.0" encoding="gbk"?>')
    assert "查询成功".encode("gbk") in response.content and "查询成功".encode() not in response.content
    assert xml(response)["msg"] == "查询成功"


def test_create_mms_stores_a_template_that_can_be_sent(http: httpx.Client) -> None:
    archive = zip_b64({"1.gif": b"GIF89a", "1.txt": "你好", "a.smil": SMIL})
    reply = xml(ihuyi(http, "CreateMms", title="Hello", zipfile=archive))
    assert (
        reply["root"] == "SubmitResult" and reply["code"] == "2" and re.fullmatch(r"\d{19}", reply["mmsid"])
    )
    assert reply["mmsid"] in ctl(http, "GET", "/state")["ihuyi"]["templates"]
    assert code_of(ihuyi(http, mmsid=reply["mmsid"])) == "2"
    assert deliveries(http)[0]["mmsid"] == reply["mmsid"]


@pytest.mark.parametrize(
    ("zipfile_field", "code"),
    [
        ("", "4040"),
        ("not base64 !!", "406"),
        (base64.b64encode(b"hello, not a zip").decode(), "406"),
        (zip_b64({"1.gif": b"GIF89a"}), "4060"),
        (zip_b64({"1.gif": b"GIF89a", "1.txt": "x", "a.smil": "<smil><body><par>"}), "4060"),
        (zip_b64({"1.txt": "x", "a.smil": SMIL}), "4060"),  # SMIL names 1.gif, not in the zip
        (zip_b64({"1.gif": b"G", "1.txt": "x", "a.smil": '<!DOCTYPE x [<!ENTITY a "b">]><smil/>'}), "4060"),
    ],
    ids=["empty", "not-base64", "not-zip", "no-smil", "smil-not-well-formed", "missing-frame", "smil-dtd"],
)
def test_create_mms_checks_the_zip(http: httpx.Client, zipfile_field: str, code: str) -> None:
    assert code_of(ihuyi(http, "CreateMms", title="t", zipfile=zipfile_field)) == code
    assert ctl(http, "GET", "/state")["ihuyi"]["templates"] == ["1001"]


# juncdt --------------------------------------------------------------------------------------------


def test_juncdt_success_reply_and_delivery(http: httpx.Client) -> None:
    reply = juncdt(http)
    assert reply["BusinessData"] == {"code": 10000, "msg": "短信发送成功", "phone": A}
    assert reply["BusinessException"] == {"resultCode": 1000, "resultMessage": "操作成功"}
    assert abs(reply["Timestamps"] / 1000 - time.time()) < 60
    [delivery] = deliveries(http, "juncdt")
    assert delivery | {"request_id": "", "at": 0} == {
        "gateway": "juncdt",
        "number": A,
        "template_code": "TPL_CODE",
        "sign_code": "SIGN01",
        "params": {"code": "1234"},
        "request_id": "",
        "at": 0,
    }
    assert ctl(http, "GET", "/state")["juncdt"]["quota"] == JUNCDT_QUOTA - 1


def test_juncdt_batch_and_plain_template(http: httpx.Client) -> None:
    reply = juncdt(http, phone=f"{A},{B},{C}", templateCode="TPL_PLAIN", params=None)
    assert reply["BusinessData"]["code"] == 10000 and reply["BusinessData"]["phone"] == f"{A},{B},{C}"
    assert [d["number"] for d in deliveries(http)] == [A, B, C]
    assert ctl(http, "GET", "/state")["juncdt"]["quota"] == JUNCDT_QUOTA - 3


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"accessKey": None}, 30022),
        ({"accessKey": "nope"}, 30024),
        ({"accessSecret": "nope"}, 30020),
        ({"classificationSecret": "nope"}, 30025),
        ({"signCode": None}, 30021),
        ({"signCode": "NOPE"}, 30005),
        ({"templateCode": "NOPE"}, 30006),
        ({"phone": ""}, 30010),
        ({"phone": "1380013800"}, 30011),
        ({"phone": f"{A},12"}, 30011),
        ({"phone": "14012345678"}, 30018),
        ({"params": {"wrong": "1"}}, 30014),
        ({"params": {"code": "1", "extra": "2"}}, 30014),
        ({"params": None}, 30014),
        ({"params": {"code": "含违禁词的内容"}}, 30013),
        ({"templateCode": "TPL_NOTICE", "params": {"name": "长" * 290, "order": "A1"}}, 30017),
    ],
)
def test_juncdt_error_codes(http: httpx.Client, overrides: dict[str, Any], code: int) -> None:
    reply = juncdt(http, **overrides)
    assert reply["BusinessData"]["code"] == code
    assert reply["BusinessData"]["msg"] and " " not in reply["BusinessData"]["msg"]
    assert deliveries(http) == []


def test_juncdt_not_json_is_an_illegal_call(http: httpx.Client) -> None:
    for body in (b"{not json", b"[1, 2]", "\u4e2d".encode("gbk")):
        reply = http.post(JUNCDT, content=body, headers={"content-type": "application/json"}).json()
        assert reply["BusinessData"] == {"code": 30023, "msg": "非法或者无效的调用", "phone": None}


def test_juncdt_501_numbers_is_30027(http: httpx.Client) -> None:
    numbers = ",".join(f"138{i:08d}" for i in range(501))
    assert jcode(http, phone=numbers) == 30027
    assert jcode(http, phone=numbers.rsplit(",", 1)[0], params={"code": "1"}) == 10000
    assert len(deliveries(http)) == 500


def test_juncdt_quota_and_daily_limit(http: httpx.Client) -> None:
    ctl(http, "POST", "/accounts", {"juncdt": {"quota": 2, "daily_limit": 2}})
    assert jcode(http, phone=f"{A},{B},{C}") == 30019
    assert jcode(http) == 10000 and jcode(http) == 10000
    assert jcode(http, phone=B) == 30019  # the quota is used up
    ctl(http, "POST", "/accounts", {"juncdt": {"quota": 10}})
    assert jcode(http) == 30028  # A reached its daily limit
    assert jcode(http, phone=f"{B},{B}") == 10000 and jcode(http, phone=B) == 30028
    assert ctl(http, "GET", "/state")["juncdt"]["quota"] == 8


def test_juncdt_sign_and_template_flags(http: httpx.Client) -> None:
    ctl(http, "POST", "/accounts", {"juncdt": {"signs": {"SIGN01": {"force_code": "30002"}}}})
    assert jcode(http) == 30002
    ctl(
        http,
        "POST",
        "/accounts",
        {"juncdt": {"signs": {"SIGN01": {}}, "templates": {"TPL_CODE": {"force_code": 30004}}}},
    )
    assert jcode(http) == 30004
    ctl(http, "POST", "/accounts", {"juncdt": {"templates": {"TPL_NEW": {"text": "你好${who}"}}}})
    assert jcode(http, templateCode="TPL_NEW", params={"who": "王"}) == 10000
    assert deliveries(http)[0]["params"] == {"who": "王"}


# Control API ---------------------------------------------------------------------------------------


def test_force_answers_the_next_calls_only(http: httpx.Client) -> None:
    ctl(http, "POST", "/force", {"gateway": "ihuyi", "method": "SendMms", "code": "4050", "times": 2})
    assert [code_of(ihuyi(http)) for _ in range(3)] == ["4050", "4050", "2"]
    ctl(http, "POST", "/force", {"gateway": "ihuyi", "method": "SendMms", "code": "2"})
    assert code_of(ihuyi(http)) == "2"
    assert len(deliveries(http)) == 1 and balance(http) == IHUYI_BALANCE - 1  # forced: nothing recorded
    ctl(
        http,
        "POST",
        "/force",
        {"gateway": "ihuyi", "method": "GetNum", "code": "4099", "msg": "运营商新规则"},
    )
    assert xml(ihuyi(http, "GetNum"))["msg"] == "运营商新规则"
    ctl(http, "POST", "/force", {"gateway": "juncdt", "method": "sendMessage", "code": "30009", "msg": None})
    assert juncdt(http)["BusinessData"] == {"code": 30009, "msg": "系统异常", "phone": A}
    ctl(http, "POST", "/force", {"gateway": "juncdt", "method": "sendMessage", "code": "E42", "msg": "x<y"})
    assert juncdt(http)["BusinessData"]["code"] == "E42"


def test_force_with_markup_in_msg_stays_well_formed(http: httpx.Client) -> None:
    ctl(http, "POST", "/force", {"gateway": "ihuyi", "method": "CreateMms", "code": "409", "msg": "a<b&c"})
    assert xml(ihuyi(http, "CreateMms", title="t", zipfile="x")) | {"mmsid": ""} == {
        "root": "SubmitResult",
        "code": "409",
        "msg": "a<b&c",
        "mmsid": "",
    }


def test_control_refuses_bad_input(http: httpx.Client) -> None:
    bad = [
        ("/force", {"gateway": "ihuyi", "method": "sendMessage", "code": "1"}),
        ("/force", {"gateway": "sms", "method": "SendMms", "code": "1"}),
        ("/faults", {"http_5xx_rate": 2}),
        ("/faults", {"hostile": "nuke"}),
        ("/faults", {"http_error_status": 404}),
        ("/faults", {"http_error_times": -1}),
        ("/faults", {"retry_after": "五秒"}),
        ("/faults", {"no_such_setting": 1}),
        ("/accounts", {"ihuyi": {"balance": "lots"}}),
        ("/accounts", {"ihuyi": {"balance": 5}, "juncdt": {"quota": "x"}}),
    ]
    for path, body in bad:
        response = http.post("/_sandbox" + path, json=body)
        assert response.status_code == 400, (path, body)
        assert response.json()["error"]
    assert balance(http) == IHUYI_BALANCE  # a bad patch changes nothing
    assert ctl(http, "GET", "/faults") == FaultSettings().to_dict()


def test_read_back_of_requests_and_delivery_counts(http: httpx.Client) -> None:
    ihuyi(http, mobile=f"{A},{A},{B},bad")
    ihuyi(http, "GetNum")
    juncdt(http, phone=A)
    log = requests_log(http)
    assert [(r["gateway"], r["method"], r["numbers"], r["code"], r["fault"]) for r in log] == [
        ("ihuyi", "SendMms", 4, "2", None),
        ("ihuyi", "GetNum", 0, "2", None),
        ("juncdt", "sendMessage", 1, "10000", None),
    ]
    assert log[0]["at"] <= log[1]["at"] <= log[2]["at"] <= time.time()
    counts = ctl(http, "GET", "/deliveries/count")
    assert counts["total"] == 4
    assert counts["ihuyi"] == {"deliveries": 3, "distinct_numbers": 2, "duplicates": 1}
    assert counts["juncdt"] == {"deliveries": 1, "distinct_numbers": 1, "duplicates": 0}
    assert http.get("/_sandbox/deliveries", params={"gateway": "x"}).status_code == 400
    ctl(http, "POST", "/reset")
    assert requests_log(http) == [] and deliveries(http) == []


def test_no_record_keeps_counters_only() -> None:
    with SandboxServer(record=False) as quiet, httpx.Client(base_url=quiet.url, timeout=5) as client:
        assert code_of(ihuyi(client, mobile=f"{A},{B}")) == "2"
        assert jcode(client) == 10000
        assert deliveries(client) == [] and requests_log(client) == []
        counts = ctl(client, "GET", "/deliveries/count")
        assert counts["total"] == 3 and counts["recorded"] is False
        assert ctl(client, "GET", "/state")["requests"] == 2


# Faults --------------------------------------------------------------------------------------------


def test_5xx_records_nothing_and_seed_makes_draws_reproducible(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"http_5xx_rate": 1.0})
    response = ihuyi(http)
    assert response.status_code == 503 and deliveries(http) == []
    assert requests_log(http)[0] | {"at": 0} == {
        "at": 0,
        "gateway": "ihuyi",
        "method": "SendMms",
        "numbers": 1,
        "code": None,
        "fault": "http_5xx",
    }

    def pattern() -> list[int]:
        ctl(http, "POST", "/faults", {"http_5xx_rate": 0.5, "seed": 7})
        return [ihuyi(http, "GetNum").status_code for _ in range(12)]

    first = pattern()
    assert first == pattern() and {200, 503} == set(first)


def test_injected_http_errors_can_be_429_with_retry_after_for_the_next_requests(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"http_error_status": 429, "retry_after": "5", "http_error_times": 2})
    first, second, third = (ihuyi(http, "GetNum") for _ in range(3))
    assert [r.status_code for r in (first, second, third)] == [429, 429, 200]
    assert first.headers["retry-after"] == "5" and "retry-after" not in third.headers
    assert [r["fault"] for r in requests_log(http)] == ["http_429", "http_429", None]
    assert ctl(http, "GET", "/faults")["http_error_times"] == 0


def test_latency_is_added_to_gateway_calls_only(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"latency_ms": 300})
    started = time.monotonic()
    ihuyi(http, "GetNum")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    ctl(http, "GET", "/state")
    assert time.monotonic() - started < 0.3


def test_a_request_waiting_out_its_latency_across_a_reset_is_not_processed(
    http: httpx.Client, server: SandboxServer
) -> None:
    # A client that gave up on a slow request must not see it land after the next reset (one test's
    # hung requests in the next test's deliveries).
    ctl(http, "POST", "/faults", {"latency_ms": 600})
    with httpx.Client(base_url=server.url, timeout=0.2) as impatient, raises(httpx.ReadTimeout):
        ihuyi(impatient)
    ctl(http, "POST", "/reset")
    time.sleep(0.8)
    assert deliveries(http) == [] and balance(http) == IHUYI_BALANCE


def test_reset_delivers_then_drops_the_connection(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"reset_rate": 1.0})
    with raises(httpx.TransportError):
        http.post(
            JUNCDT,
            json={
                "accessKey": JUNCDT_ACCESS_KEY,
                "accessSecret": JUNCDT_ACCESS_SECRET,
                "classificationSecret": JUNCDT_PACKAGE_CODE,
                "signCode": "SIGN01",
                "templateCode": "TPL_PLAIN",
                "phone": A,
            },
        )
    assert [d["number"] for d in deliveries(http)] == [A]  # delivered, but the client cannot know
    assert requests_log(http)[0]["fault"] == "reset" and requests_log(http)[0]["code"] == "10000"


def test_hang_delivers_and_never_answers(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"hang_rate": 1.0})
    started = time.monotonic()
    form = {"account": IHUYI_ACCOUNT, "password": IHUYI_PASSWORD, "mobile": A, "mmsid": "1001", "pid": "1"}
    with raises(httpx.ReadTimeout):
        http.post(IHUYI, params={"method": "SendMms"}, data=form, timeout=0.5)
    assert time.monotonic() - started < 2
    assert len(deliveries(http)) == 1 and requests_log(http)[0]["fault"] == "hang"


def test_malformed_is_an_html_page_with_200(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"malformed_rate": 1.0})
    response = ihuyi(http)
    assert response.status_code == 200 and response.text.lstrip().startswith("<html>")
    assert len(deliveries(http)) == 1


def test_redirect_is_a_302_and_not_processed(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"hostile": "redirect"})
    response = ihuyi(http, "GetNum")
    assert response.status_code == 302 and response.headers["location"] == "http://127.0.0.2:9/steal"
    ctl(http, "POST", "/faults", {"redirect_to": "http://127.0.0.1:1/x"})
    assert ihuyi(http).headers["location"] == "http://127.0.0.1:1/x"
    assert deliveries(http) == []


def test_xml_bomb_empty_and_truncated(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"hostile": "xml_bomb"})
    bomb = ihuyi(http, "GetNum")
    assert bomb.status_code == 200 and b"<!ENTITY" in bomb.content and len(bomb.content) < 4096
    ctl(http, "POST", "/faults", {"hostile": "empty"})
    assert ihuyi(http).content == b""
    ctl(http, "POST", "/faults", {"hostile": "truncated"})
    whole = ihuyi(http, "GetNum", password="x")
    assert (
        whole.status_code == 200
        and whole.content.startswith(b"<?xml")
        and b"</GetNumResult>" not in whole.content
    )
    assert len(deliveries(http)) == 1  # empty and truncated replies still come after the send


def test_huge_reply_can_be_abandoned(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"hostile": "huge"})
    started = time.monotonic()
    received = 0
    with balance_query_stream(http) as response:
        assert response.status_code == 200 and "content-length" not in response.headers
        for chunk in response.iter_raw():
            received += len(chunk)
            if received >= 1 << 20:
                break
    assert received >= 1 << 20 and time.monotonic() - started < 3
    ctl(http, "POST", "/faults", {"hostile": None})
    assert code_of(ihuyi(http, "GetNum")) == "2"  # the server is fine afterwards


def test_trickle_sends_a_valid_reply_slowly(http: httpx.Client) -> None:
    ctl(http, "POST", "/faults", {"hostile": "trickle", "trickle_interval": 0.25})
    started = time.monotonic()
    received = b""
    with balance_query_stream(http) as response:
        for chunk in response.iter_raw():
            received += chunk
            if len(received) >= 4:
                break
    assert received.startswith(b"<?xm") and time.monotonic() - started >= 0.7


def test_stop_returns_quickly_while_requests_hang() -> None:
    own = SandboxServer().start()
    own.state.set_faults({"hang_rate": 1.0})
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(
                own.url + IHUYI,
                params={"method": "GetNum"},
                timeout=30,
                data={"account": IHUYI_ACCOUNT, "password": IHUYI_PASSWORD},
            )
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while not own.state.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    own.stop()
    assert time.monotonic() - started < 3
    caller.join(5)
    assert not caller.is_alive() and errors  # the hung client got an error, not a reply


# State, config and CLI -------------------------------------------------------------------------------


def test_config_overrides_defaults_and_survives_reset(tmp_path: Any) -> None:
    config = {
        "ihuyi": {"account": "C1", "password": "p", "balance": 5, "product_ids": [1, 2]},
        "juncdt": {"quota": 7, "signs": {"SIGN02": {}}},
        "faults": {"latency_ms": 5},
    }
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    state = SandboxState.from_file(path, record=False)
    state.ihuyi.balance = 0
    state.reset()
    assert (state.ihuyi.account, state.ihuyi.balance, state.ihuyi.product_ids) == ("C1", 5, {1, 2})
    assert state.juncdt.quota == 7 and set(state.juncdt.signs) == {"SIGN01", "SIGN02"}
    assert state.faults.latency_ms == 5 and state.record is False


def test_forced_queue_is_fifo_per_method() -> None:
    state = SandboxState()
    state.force("ihuyi", "SendMms", "0", times=2)
    state.force("ihuyi", "SendMms", "4051")
    taken = [state.take_forced("ihuyi", "SendMms") for _ in range(4)]
    assert [f.code if f else None for f in taken] == ["0", "0", "4051", None]
    assert state.take_forced("ihuyi", "GetNum") is None


def test_sandbox_never_imports_airflow() -> None:
    code = (
        "import sys, airflow_provider_sms.sandbox.__main__, airflow_provider_sms.sandbox.server; "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_cli_runs_in_the_foreground() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_sms.sandbox",
            "--port",
            "0",
            "--latency-ms",
            "1",
            "--no-record",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert url, first
        banner = first + "".join(proc.stdout.readline() for _ in range(4))
        assert IHUYI_PASSWORD in banner and JUNCDT_ACCESS_SECRET in banner
        state = httpx.get(url.group(0) + "/_sandbox/state", timeout=5).json()
        assert state["record"] is False and state["ihuyi"]["balance"] == IHUYI_BALANCE
    finally:
        proc.terminate()
        proc.wait(10)

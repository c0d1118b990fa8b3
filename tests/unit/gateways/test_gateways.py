"""Gateway clients against the sandbox over loopback: every documented code, reply shapes, faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_provider_sms.errors import TransportError
from airflow_provider_sms.gateways.ihuyi import IhuyiClient
from airflow_provider_sms.gateways.juncdt import JuncdtClient
from airflow_provider_sms.gateways.transport import HttpSettings
from airflow_provider_sms.protocol.codes import (
    IHUYI_CREATE_MMS,
    IHUYI_GET_NUM,
    IHUYI_SEND_MMS,
    JUNCDT_SEND_MESSAGE,
    CodeClass,
)
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import (
    IHUYI_PASSWORD,
    JUNCDT_ACCESS_SECRET,
    JUNCDT_PACKAGE_CODE,
    control,
    deliveries,
    force,
    ihuyi,
    juncdt,
    raises,
)

NUMBER = "13812348000"


def faults(server: SandboxServer, **settings: object) -> None:
    control(server, "POST", "/_sandbox/faults", settings)


# What each documented code means, written out from the vendors' code tables (not read from
# protocol/codes.py, which these tests check). S success, T transient (retry with backoff), F fatal
# (stop the campaign), B bad input (those recipients, go on). P: bad input for a recipient whose own
# params caused it, fatal for a message everyone shares (tested in tests/unit/dispatch/test_answer_policy.py).
S, T, F, B, P = "success", "transient", "fatal", "bad_input", "param"

SEND_MMS: dict[str, str] = {
    "2": S,
    "0": T,
    **dict.fromkeys(["400", "401", "402", "404", "4040", "405", "4050", "406", "4060", "407", "4070"], F),
    "4051": F,  # balance too low: stop now
    "403": B,  # no number
    "409": B,  # no well-formed number in the batch, or blacklisted
}
GET_NUM: dict[str, str] = {"2": S, **dict.fromkeys(["400", "401", "402", "405", "4050"], F)}
CREATE_MMS: dict[str, str] = {
    "2": S,
    "0": T,
    **dict.fromkeys(
        ["400", "401", "402", "403", "404", "4040", "405", "4050", "4051", "406", "4060", "409"], F
    ),
}
SEND_MESSAGE: dict[str, str] = {
    "10000": S,
    "10001": T,
    "30009": T,
    **dict.fromkeys([f"300{n:02d}" for n in range(1, 9)], F),  # signature, template, keywords
    "30012": F,
    "30015": F,
    "30016": F,
    "30019": F,  # quota used up: stop now
    **dict.fromkeys([f"300{n}" for n in range(20, 28)], F),  # auth, package code, over 500 numbers
    "30010": B,
    "30011": B,
    "30018": B,
    "30028": B,  # that number reached its daily limit
    "30013": P,  # illegal words in the content
    "30014": P,  # variables don't match the template
    "30017": P,  # content over 300 characters
}


def _cases(table: dict[str, str], *, skip: str = "") -> list[tuple[str, str]]:
    return sorted((code, kind) for code, kind in table.items() if kind not in (P, skip))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (IHUYI_SEND_MMS, SEND_MMS),
        (IHUYI_GET_NUM, GET_NUM),
        (IHUYI_CREATE_MMS, CREATE_MMS),
        (JUNCDT_SEND_MESSAGE, SEND_MESSAGE),
    ],
)
def test_the_tables_document_exactly_the_vendors_codes(
    ours: dict[str, tuple[CodeClass, str]], theirs: dict[str, str]
) -> None:
    assert sorted(ours) == sorted(theirs)


# Every code of every table, reached on purpose, surfaces verbatim with the class the vendor gives it.
@pytest.mark.parametrize(("code", "kind"), _cases(SEND_MMS))
def test_send_mms_every_code(gw: SandboxServer, code: str, kind: str) -> None:
    force(gw, "ihuyi", "SendMms", code, msg=f"msg-{code}")
    reply = ihuyi(gw).send_mms([NUMBER], "1001")
    assert (reply.code, reply.message, reply.code_class.value) == (code, f"msg-{code}", kind)


@pytest.mark.parametrize(("code", "kind"), _cases(GET_NUM, skip=S))
def test_get_num_every_code(gw: SandboxServer, code: str, kind: str) -> None:
    # Success is covered by test_get_num_reads_the_balance.
    force(gw, "ihuyi", "GetNum", code, msg=f"msg-{code}")
    reply = ihuyi(gw).get_num()
    assert (reply.code, reply.message, reply.code_class.value) == (code, f"msg-{code}", kind)


@pytest.mark.parametrize(("code", "kind"), _cases(CREATE_MMS, skip=S))
def test_create_mms_every_code(gw: SandboxServer, code: str, kind: str) -> None:
    # Success is covered by test_create_mms_stores_a_template.
    force(gw, "ihuyi", "CreateMms", code, msg=f"msg-{code}")
    reply = ihuyi(gw).create_mms("t", b"PK-not-checked")
    assert (reply.code, reply.message, reply.code_class.value) == (code, f"msg-{code}", kind)


@pytest.mark.parametrize(("code", "kind"), _cases(SEND_MESSAGE))
async def test_juncdt_every_code(gw: SandboxServer, code: str, kind: str) -> None:
    force(gw, "juncdt", "sendMessage", code, msg=f"msg-{code}")
    client = juncdt(gw)
    try:
        reply = await client.asend([NUMBER], "TPL_CODE", {"code": "1234"})
    finally:
        await client.aclose()
    assert (reply.code, reply.message, reply.code_class.value) == (code, f"msg-{code}", kind)


@pytest.mark.parametrize("code", sorted(c for c, kind in SEND_MESSAGE.items() if kind == P))
@pytest.mark.parametrize(("personal", "kind"), [(True, B), (False, F)])
def test_param_dependent_codes_blame_a_row_only_for_its_own_params(
    gw: SandboxServer, code: str, personal: bool, kind: str
) -> None:
    from airflow_provider_sms.dispatch.recipients import Recipient
    from airflow_provider_sms.dispatch.senders import SmsSender

    force(gw, "juncdt", "sendMessage", code)
    client = juncdt(gw)
    reply = client.send([NUMBER, "13900001111"], "TPL_CODE", {"code": "1"})
    sender = SmsSender(client, "TPL_CODE", sign_code=None, numbers_per_request=2)
    batch = [Recipient(i, n, {"code": "1"}, personal=personal) for i, n in enumerate([NUMBER, "13900001111"])]
    assert sender.classify(reply, batch).value == kind


def test_undocumented_codes_are_unknown_and_verbatim(gw: SandboxServer) -> None:
    force(gw, "ihuyi", "SendMms", "4099", msg="运营商新规则")
    reply = ihuyi(gw).send_mms([NUMBER], "1001")
    assert (reply.code, reply.message, reply.code_class) == ("4099", "运营商新规则", CodeClass.UNKNOWN)
    force(gw, "juncdt", "sendMessage", "39999", msg="new")
    assert juncdt(gw).send([NUMBER], "TPL_CODE", {"code": "1"}).code_class is CodeClass.UNKNOWN


# Codes reached by the gateway's own logic, not forced.
def test_send_mms_success_records_delivery_and_charges_balance(gw: SandboxServer) -> None:
    client = ihuyi(gw)
    before = int(client.get_num().ids["num"])
    reply = client.send_mms([NUMBER, "13900001111"], "1001")
    assert reply.ok and reply.code == "2" and reply.ids["mmsid"].isdigit()
    assert int(client.get_num().ids["num"]) == before - 2
    assert sorted(d["number"] for d in deliveries(gw, "ihuyi")) == [NUMBER, "13900001111"]


def test_get_num_reads_the_balance(gw: SandboxServer) -> None:
    control(gw, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 19455}})
    reply = ihuyi(gw).get_num()
    assert reply.ids["num"] == "19455" and isinstance(reply.ids["num"], str)


def test_a_balance_shaped_like_a_mobile_number_is_read_as_it_is(gw: SandboxServer) -> None:
    # Replies are masked for display; ids and counts the client reads are not texts.
    control(gw, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 13912345678}})
    assert ihuyi(gw).get_num().ids["num"] == "13912345678"


def test_natural_fatal_codes(gw: SandboxServer) -> None:
    assert ihuyi(gw, password="wrong").get_num().code == "405"
    control(gw, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 1}})
    assert ihuyi(gw).send_mms([NUMBER, "13900001111"], "1001").code == "4051"
    control(gw, "POST", "/_sandbox/accounts", {"ihuyi": {"frozen": True, "balance": 10}})
    assert ihuyi(gw).send_mms([NUMBER], "1001").code == "4050"
    assert deliveries(gw) == []


def test_blacklisted_batch_is_bad_input(gw: SandboxServer) -> None:
    control(gw, "POST", "/_sandbox/accounts", {"ihuyi": {"blacklist": [NUMBER]}})
    reply = ihuyi(gw).send_mms([NUMBER], "1001")
    assert (reply.code, reply.code_class) == ("409", CodeClass.BAD_INPUT)


def test_juncdt_natural_codes(gw: SandboxServer) -> None:
    client = juncdt(gw)
    assert client.send([NUMBER], "TPL_CODE", {"code": "1"}).code == "10000"
    assert client.send([NUMBER], "TPL_CODE", {"wrong": "1"}).code == "30014"
    assert client.send([NUMBER], "NOPE", {"code": "1"}).code == "30006"
    assert client.send(["14012345678"], "TPL_CODE", {"code": "1"}).code == "30018"
    bad_key = JuncdtClient(
        "nope", JUNCDT_ACCESS_SECRET, JUNCDT_PACKAGE_CODE, HttpSettings(gw.url), default_sign_code="SIGN01"
    )
    assert bad_key.send([NUMBER], "TPL_CODE", {"code": "1"}).code == "30024"
    assert [d["number"] for d in deliveries(gw, "juncdt")] == [NUMBER]


def test_create_mms_stores_a_template(gw: SandboxServer) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("1.txt", "你好")
        archive.writestr("a.smil", '<smil><body><par dur="5s"><text src="1.txt"/></par></body></smil>')
    reply = ihuyi(gw).create_mms("hello", buffer.getvalue())
    assert reply.ok and reply.ids["mmsid"].isdigit()
    assert ihuyi(gw).send_mms([NUMBER], reply.ids["mmsid"]).ok


# Reply shapes.
@pytest.mark.parametrize(
    "shape",
    [
        {"ihuyi_namespace": True},
        {"ihuyi_namespace": False},
        {"ihuyi_prefixed_namespace": True},
        {"ihuyi_encoding": "gbk"},
    ],
)
def test_reply_shapes_parse_the_same(gw: SandboxServer, shape: dict[str, object]) -> None:
    faults(gw, **shape)
    control(gw, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 0}})
    reply = ihuyi(gw).send_mms([NUMBER], "1001")
    assert reply.code == "4051"
    assert reply.message == "剩余条数不足"


# Transport faults: each is explicit, ambiguous when the message may have gone out.
@pytest.mark.parametrize(("hostile", "ambiguous"), [("empty", True), ("truncated", True), ("xml_bomb", True)])
def test_non_xml_replies_are_transport_faults(gw: SandboxServer, hostile: str, ambiguous: bool) -> None:
    faults(gw, hostile=hostile)
    with raises(TransportError) as info:
        ihuyi(gw).send_mms([NUMBER], "1001")
    assert info.value.ambiguous is ambiguous
    with raises(TransportError) as query:
        ihuyi(gw).get_num()
    assert query.value.ambiguous is False  # a balance query is safe to repeat


async def test_a_compressed_reply_is_read_like_any_other(gw: SandboxServer) -> None:
    # We ask for uncompressed replies; a proxy that gzips anyway must not turn a success into a garble
    # (ambiguous, and resent with resend_ambiguous).
    faults(gw, hostile="gzip")
    assert ihuyi(gw).send_mms([NUMBER], "1001").code == "2"
    assert juncdt(gw).send([NUMBER], "TPL_CODE", {"code": "1"}).code == "10000"
    client = ihuyi(gw)
    assert (await client.asend_mms(["13900139000"], "1001")).code == "2"
    assert (await client.aget_num()).ok
    await client.aclose()
    sms = juncdt(gw)
    assert (await sms.asend(["13900139000"], "TPL_CODE", {"code": "1"})).code == "10000"
    await sms.aclose()
    assert len(deliveries(gw)) == 4


def test_html_error_page_is_never_success(gw: SandboxServer) -> None:
    faults(gw, malformed_rate=1.0)
    with raises(TransportError, match=r"not well-formed|XML") as info:
        ihuyi(gw).send_mms([NUMBER], "1001")
    assert info.value.ambiguous


def test_5xx_is_retryable_and_not_ambiguous(gw: SandboxServer) -> None:
    faults(gw, http_5xx_rate=1.0)
    with raises(TransportError, match="HTTP 503") as info:
        juncdt(gw).send([NUMBER], "TPL_CODE", {"code": "1"})
    assert info.value.retryable and not info.value.ambiguous
    assert deliveries(gw) == []


@pytest.mark.parametrize(
    ("status", "header", "wait"),
    [(429, "7", 7.0), (503, "120", 120.0), (429, None, None), (500, "7", None), (503, "soon", None)],
)
async def test_retry_after_of_a_429_or_503_is_read(
    gw: SandboxServer, status: int, header: str | None, wait: float | None
) -> None:
    faults(gw, http_error_status=status, retry_after=header, http_5xx_rate=1.0)
    client = juncdt(gw)
    with raises(TransportError, match=f"HTTP {status}") as sync:
        client.send([NUMBER], "TPL_CODE", {"code": "1"})
    with raises(TransportError, match=f"HTTP {status}") as asynchronous:
        await client.asend([NUMBER], "TPL_CODE", {"code": "1"})
    await client.aclose()
    for info in (sync, asynchronous):
        assert (info.value.retry_after, info.value.retryable, info.value.ambiguous) == (wait, True, False)


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    from airflow_provider_sms.gateways.transport import parse_retry_after

    now = 1_800_000_000.0  # 2027-01-15 08:00:00 GMT
    assert parse_retry_after("5", now) == 5.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:30 GMT", now) == 30.0
    assert parse_retry_after("Fri, 15 Jan 2027 07:00:00 GMT", now) == 0.0  # already past: now
    for unreadable in (None, "", "-5", "1.5", "later", "Fri, 15 Jan 2027 08:00:30"):
        assert parse_retry_after(unreadable, now) is None, unreadable


@pytest.mark.parametrize("use_async", [False, True])
async def test_timeout_after_sending_is_ambiguous(gw: SandboxServer, use_async: bool) -> None:
    faults(gw, hang_rate=1.0)
    client = ihuyi(gw, timeout=0.5)
    started = time.monotonic()
    with raises(TransportError) as info:
        if use_async:
            await client.asend_mms([NUMBER], "1001")
        else:
            client.send_mms([NUMBER], "1001")
    await client.aclose()
    assert info.value.ambiguous
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("use_async", [False, True])
async def test_reset_mid_reply_is_ambiguous(gw: SandboxServer, use_async: bool) -> None:
    faults(gw, reset_rate=1.0)
    client = juncdt(gw)
    with raises(TransportError) as info:
        if use_async:
            await client.asend([NUMBER], "TPL_CODE", {"code": "1"})
        else:
            client.send([NUMBER], "TPL_CODE", {"code": "1"})
    await client.aclose()
    assert info.value.ambiguous


async def test_connection_refused_is_not_ambiguous() -> None:
    client = IhuyiClient("a", "b", HttpSettings("http://127.0.0.1:9", timeout=2), default_pid=1)
    with raises(TransportError) as info:
        client.send_mms([NUMBER], "1001")
    with raises(TransportError) as ainfo:
        await client.asend_mms([NUMBER], "1001")
    await client.aclose()
    assert not info.value.ambiguous and not ainfo.value.ambiguous


@pytest.mark.parametrize("use_async", [False, True])
async def test_huge_and_trickling_replies_are_bounded(gw: SandboxServer, use_async: bool) -> None:
    client = ihuyi(gw, timeout=2)
    for hostile in ("huge", "trickle"):
        faults(gw, hostile=hostile)
        started = time.monotonic()
        with raises(TransportError):
            if use_async:
                await client.aget_num()
            else:
                client.get_num()
        assert time.monotonic() - started < 5, hostile
    await client.aclose()


class _Thief(BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012

    def do_POST(self) -> None:
        _Thief.hits.append(self.rfile.read(int(self.headers.get("content-length", 0))).decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def thief() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Thief)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/steal"
    server.shutdown()


@pytest.mark.parametrize("use_async", [False, True])
async def test_redirect_is_refused_and_credentials_stay_home(
    gw: SandboxServer, thief: str, use_async: bool
) -> None:
    faults(gw, hostile="redirect", redirect_to=thief)
    client = ihuyi(gw)
    with raises(TransportError, match="redirect") as info:
        if use_async:
            await client.aget_num()
        else:
            client.get_num()
    await client.aclose()
    assert not info.value.retryable
    assert _Thief.hits == []
    assert IHUYI_PASSWORD not in str(info.value)


def test_password_never_in_url_or_repr(gw: SandboxServer) -> None:
    client = ihuyi(gw)
    request = client.build_send_mms([NUMBER], "1001")
    assert IHUYI_PASSWORD not in str(request.url)
    assert request.method == "POST"
    assert IHUYI_PASSWORD not in repr(client)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765/a/path?method=SendMms", "https://market.juncdt.com/p", "http://[::1]:99/x"]
)
def test_prebuilt_requests_are_what_httpx_builds(url: str) -> None:
    """The bulk path's cheaper request is the same request, byte for byte on the wire."""
    import httpx

    from airflow_provider_sms.gateways.transport import fixed_headers, post_request

    headers = {"Content-Type": "application/json; charset=utf-8", "Accept-Encoding": "identity"}
    content = '{"phone":"13812348000","msg":"短信"}'.encode()
    ours = post_request(httpx.URL(url), fixed_headers(httpx.URL(url), headers), content)
    theirs = httpx.Request("POST", httpx.URL(url), content=content, headers=headers)
    assert (ours.method, ours.url, ours.headers.raw, ours.content) == (
        theirs.method,
        theirs.url,
        theirs.headers.raw,
        theirs.content,
    )


def test_one_answer_to_can_a_retry_help() -> None:
    """Every error says whether a retry can help; the operators, the upload and the trigger ask it."""
    from airflow_provider_sms.errors import (
        BadInputGatewayError,
        FatalGatewayError,
        InsufficientBalanceError,
        InvalidInputError,
        TransientGatewayError,
        TransportError,
        UnknownGatewayCodeError,
    )
    from airflow_provider_sms.gateways.models import GatewayReply
    from airflow_provider_sms.protocol.codes import CodeClass
    from airflow_provider_sms.triggers.balance import classify_balance_error

    def reply(kind: CodeClass) -> GatewayReply:
        return GatewayReply("ihuyi", "SendMms", "0", "msg", kind)

    answers = {
        TransientGatewayError(reply(CodeClass.TRANSIENT)): True,
        TransportError("timeout before sending", ambiguous=False): True,
        TransportError("a redirect", ambiguous=False, retryable=False): False,
        FatalGatewayError(reply(CodeClass.FATAL)): False,
        BadInputGatewayError(reply(CodeClass.BAD_INPUT)): False,
        UnknownGatewayCodeError(reply(CodeClass.UNKNOWN)): False,
        InvalidInputError("bad number"): False,
        InsufficientBalanceError("too little"): False,
    }
    for error, retry_helps in answers.items():
        assert error.retryable is retry_helps, error
        assert classify_balance_error(error) == ("transient" if retry_helps else "fatal")

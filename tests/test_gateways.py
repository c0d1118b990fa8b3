"""Gateway clients against the sandbox over loopback: every documented code, reply shapes, faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_provider_sms.gateways.errors import TransportError
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
from tests.conftest import (
    IHUYI_ACCOUNT,
    IHUYI_PASSWORD,
    JUNCDT_ACCESS_KEY,
    JUNCDT_ACCESS_SECRET,
    JUNCDT_PACKAGE_CODE,
    control,
    deliveries,
    force,
)

NUMBER = "13812348000"


def ihuyi(server: SandboxServer, timeout: float = 5.0, password: str = IHUYI_PASSWORD) -> IhuyiClient:
    return IhuyiClient(IHUYI_ACCOUNT, password, HttpSettings(server.url, timeout=timeout), default_pid=1)


def juncdt(server: SandboxServer, timeout: float = 5.0) -> JuncdtClient:
    return JuncdtClient(
        JUNCDT_ACCESS_KEY,
        JUNCDT_ACCESS_SECRET,
        JUNCDT_PACKAGE_CODE,
        HttpSettings(server.url, timeout=timeout),
        default_sign_code="SIGN01",
    )


def faults(server: SandboxServer, **settings: object) -> None:
    control(server, "POST", "/_sandbox/faults", settings)


# Every code of every table, reached on purpose, surfaces verbatim with the class of its table.
@pytest.mark.parametrize(("code", "entry"), sorted(IHUYI_SEND_MMS.items()))
def test_send_mms_every_code(gw: SandboxServer, code: str, entry: tuple[CodeClass, str]) -> None:
    force(gw, "ihuyi", "SendMms", code, msg=f"msg-{code}")
    reply = ihuyi(gw).send_mms([NUMBER], "1001")
    assert (reply.code, reply.message, reply.code_class) == (code, f"msg-{code}", entry[0])


@pytest.mark.parametrize(("code", "entry"), sorted(IHUYI_GET_NUM.items()))
def test_get_num_every_code(gw: SandboxServer, code: str, entry: tuple[CodeClass, str]) -> None:
    force(gw, "ihuyi", "GetNum", code, msg=f"msg-{code}")
    if code == "2":
        pytest.skip("success is covered by test_get_num_reads_the_balance")
    reply = ihuyi(gw).get_num()
    assert (reply.code, reply.message, reply.code_class) == (code, f"msg-{code}", entry[0])


@pytest.mark.parametrize(("code", "entry"), sorted(IHUYI_CREATE_MMS.items()))
def test_create_mms_every_code(gw: SandboxServer, code: str, entry: tuple[CodeClass, str]) -> None:
    if code == "2":
        pytest.skip("success is covered by test_create_mms_stores_a_template")
    force(gw, "ihuyi", "CreateMms", code, msg=f"msg-{code}")
    reply = ihuyi(gw).create_mms("t", b"PK-not-checked")
    assert (reply.code, reply.message, reply.code_class) == (code, f"msg-{code}", entry[0])


@pytest.mark.parametrize(("code", "entry"), sorted(JUNCDT_SEND_MESSAGE.items()))
async def test_juncdt_every_code(gw: SandboxServer, code: str, entry: tuple[CodeClass, str]) -> None:
    force(gw, "juncdt", "sendMessage", code, msg=f"msg-{code}")
    client = juncdt(gw)
    try:
        reply = await client.asend([NUMBER], "TPL_CODE", {"code": "1234"})
    finally:
        await client.aclose()
    assert (reply.code, reply.message, reply.code_class) == (code, f"msg-{code}", entry[0])


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
    with pytest.raises(TransportError) as info:
        ihuyi(gw).send_mms([NUMBER], "1001")
    assert info.value.ambiguous is ambiguous
    with pytest.raises(TransportError) as query:
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
    with pytest.raises(TransportError, match=r"not well-formed|XML") as info:
        ihuyi(gw).send_mms([NUMBER], "1001")
    assert info.value.ambiguous


def test_5xx_is_retryable_and_not_ambiguous(gw: SandboxServer) -> None:
    faults(gw, http_5xx_rate=1.0)
    with pytest.raises(TransportError, match="HTTP 503") as info:
        juncdt(gw).send([NUMBER], "TPL_CODE", {"code": "1"})
    assert info.value.retryable and not info.value.ambiguous
    assert deliveries(gw) == []


@pytest.mark.parametrize("use_async", [False, True])
async def test_timeout_after_sending_is_ambiguous(gw: SandboxServer, use_async: bool) -> None:
    faults(gw, hang_rate=1.0)
    client = ihuyi(gw, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
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
    with pytest.raises(TransportError) as info:
        if use_async:
            await client.asend([NUMBER], "TPL_CODE", {"code": "1"})
        else:
            client.send([NUMBER], "TPL_CODE", {"code": "1"})
    await client.aclose()
    assert info.value.ambiguous


async def test_connection_refused_is_not_ambiguous() -> None:
    client = IhuyiClient("a", "b", HttpSettings("http://127.0.0.1:9", timeout=2), default_pid=1)
    with pytest.raises(TransportError) as info:
        client.send_mms([NUMBER], "1001")
    with pytest.raises(TransportError) as ainfo:
        await client.asend_mms([NUMBER], "1001")
    await client.aclose()
    assert not info.value.ambiguous and not ainfo.value.ambiguous


@pytest.mark.parametrize("use_async", [False, True])
async def test_huge_and_trickling_replies_are_bounded(gw: SandboxServer, use_async: bool) -> None:
    client = ihuyi(gw, timeout=2)
    for hostile in ("huge", "trickle"):
        faults(gw, hostile=hostile)
        started = time.monotonic()
        with pytest.raises(TransportError):
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
    with pytest.raises(TransportError, match="redirect") as info:
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

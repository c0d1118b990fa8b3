"""Whatever a gateway says is shown clean: numbers masked, the client's own secrets as ``***``, in the
log, the exception, the summary (its XCom) and the per-recipient report alike."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from airflow_provider_sms.dispatch.settings import SendSettings
from airflow_provider_sms.errors import FatalGatewayError, TransportError, UnknownGatewayCodeError
from airflow_provider_sms.gateways.ihuyi import IhuyiClient
from airflow_provider_sms.gateways.transport import HttpSettings
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.hooks.juncdt import JuncdtHook
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import (
    IHUYI_ACCOUNT,
    IHUYI_PASSWORD,
    JUNCDT_ACCESS_SECRET,
    JUNCDT_PACKAGE_CODE,
    force,
    raises,
)
from tests.leak_scan import SECRETS

NUMBER = "13800000120"
# What a gateway might say: a number of the request, and the request's secrets echoed back.
JUNCDT_SAYS = f"可用次数不足 {NUMBER} as={JUNCDT_ACCESS_SECRET} pkg={JUNCDT_PACKAGE_CODE}"
JUNCDT_SHOWN = "可用次数不足 138****0120 as=*** pkg=***"
IHUYI_SAYS = f"剩余条数不足 +86{NUMBER} password={IHUYI_PASSWORD}"
IHUYI_SHOWN = "剩余条数不足 +86*******0120 password=***"


def test_a_campaign_shows_the_gateways_words_clean_everywhere(
    connections: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.csv"
    force(connections, "juncdt", "sendMessage", "30019", msg=JUNCDT_SAYS)
    summary = JuncdtHook().send_bulk(
        [NUMBER, "13900000121"],
        "TPL_CODE",
        {"code": "1"},
        # One request at a time, so the forced answer is the first number's (two raced for it).
        bulk=SendSettings(report_uri=str(report), concurrency=1),
    )
    xcom = summary.as_dict()
    assert xcom["reasons"] == {f"failed: 30019 {JUNCDT_SHOWN}": 1}
    assert xcom["stopped"] == f"juncdt sendMessage answered code 30019: {JUNCDT_SHOWN}"
    rows = {row["phone"]: row for row in csv.DictReader(report.open(encoding="utf-8"))}
    assert rows["138****0120"]["message"] == JUNCDT_SHOWN
    log = capsys.readouterr().out  # the hook's task logger writes there
    assert f"Stopping the campaign, no new request will start: {xcom['stopped']}" in log
    everything = log + str(xcom) + report.read_text(encoding="utf-8")
    assert NUMBER not in everything
    assert [secret for secret in SECRETS if secret in everything] == []


def test_a_single_send_raises_with_the_words_clean(connections: SandboxServer) -> None:
    force(connections, "ihuyi", "SendMms", "4051", msg=IHUYI_SAYS)
    with raises(FatalGatewayError) as info:
        IhuyiHook().send_mms("13812348000", "1001")
    assert str(info.value) == f"ihuyi SendMms answered code 4051: {IHUYI_SHOWN}"
    assert info.value.reply.message == IHUYI_SHOWN
    force(connections, "juncdt", "sendMessage", "39999", msg=JUNCDT_SAYS)
    with raises(UnknownGatewayCodeError) as unknown:
        JuncdtHook().send_sms("13812348000", "TPL_CODE", {"code": "1"})
    assert str(unknown.value) == f"juncdt sendMessage answered code 39999: {JUNCDT_SHOWN}"
    assert "13812348000" not in repr(unknown.value.reply)  # juncdt echoes the phone in its reply


class _Echo(BaseHTTPRequestHandler):
    """A gateway whose reply names an encoding it made up from the request: the parser quotes it."""

    body = b""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", str(len(_Echo.body)))
        self.end_headers()
        self.wfile.write(_Echo.body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(("quoted", "shown"), [(IHUYI_PASSWORD, "'***'"), (NUMBER, "'138****0120'")])
async def test_a_transport_fault_quoting_the_reply_is_clean(echo: str, quoted: str, shown: str) -> None:
    _Echo.body = f'<?xml version="1.0" encoding="{quoted}"?><r><code>2</code></r>'.encode()
    client = IhuyiClient(IHUYI_ACCOUNT, IHUYI_PASSWORD, HttpSettings(echo, timeout=5), default_pid=1)
    with raises(TransportError) as sync:
        client.get_num()
    with raises(TransportError) as asynchronous:
        await client.aget_num()
    await client.aclose()
    for info in (sync, asynchronous):
        assert str(info.value) == f"ihuyi GetNum: reply declares an unknown encoding {shown}"
        assert quoted not in str(info.value.__cause__)

"""Hooks read Airflow Connections (JSON env-var form) and talk to the sandbox over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airflow_provider_sms.errors import (
    BadInputGatewayError,
    FatalGatewayError,
    InvalidInputError,
    TransientGatewayError,
)
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.hooks.juncdt import JuncdtHook
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import (
    IHUYI_PASSWORD,
    control,
    deliveries,
    force,
    ihuyi_conn,
    juncdt_conn,
    raises,
    set_conn,
)
from tests.leak_scan import SECRETS


def test_ihuyi_hook_sends_and_reads_balance(connections: SandboxServer) -> None:
    hook = IhuyiHook()
    before = hook.get_balance()
    reply = hook.send_mms("+86 138-1234-8000, 13900001111, 13812348000", "1001")
    assert reply.ok and reply.code == "2"
    assert hook.get_balance() == before - 2  # the duplicate went out once
    assert sorted(d["number"] for d in deliveries(connections)) == ["13812348000", "13900001111"]


async def test_async_twins(connections: SandboxServer) -> None:
    hook = IhuyiHook()
    assert await hook.aget_balance() > 0
    assert (await hook.asend_mms(["13812348000"], 1001)).ok
    assert (await JuncdtHook().asend_sms("13812348000", "TPL_CODE", {"code": "42"})).ok
    await hook.client.aclose()


def test_bad_input_refused_before_sending(connections: SandboxServer) -> None:
    hook = IhuyiHook()
    with raises(InvalidInputError, match="invalid phone number") as info:
        hook.send_mms(["13812348000", "12345"], "1001")
    assert str(info.value) == "1 invalid phone number(s): ***45 (5 digits, a mainland mobile number has 11)"
    with raises(InvalidInputError, match="no phone number"):
        hook.send_mms([], "1001")
    with raises(InvalidInputError, match="in the past"):
        hook.send_mms("13812348000", "1001", send_time="2020-01-01 00:00:00")
    assert deliveries(connections) == []


def test_codes_become_errors_of_their_class(connections: SandboxServer) -> None:
    hook = IhuyiHook()
    force(connections, "ihuyi", "SendMms", "4051")
    with raises(FatalGatewayError, match="4051") as info:
        hook.send_mms("13812348000", "1001")
    assert info.value.reply.message  # the gateway's own words
    force(connections, "ihuyi", "SendMms", "0")
    with raises(TransientGatewayError):
        hook.send_mms("13812348000", "1001")
    control(connections, "POST", "/_sandbox/accounts", {"ihuyi": {"blacklist": ["13812348000"]}})
    with raises(BadInputGatewayError, match="409"):
        hook.send_mms("13812348000", "1001")


def test_juncdt_hook_personalised_send(connections: SandboxServer) -> None:
    reply = JuncdtHook().send_sms("13812348000", "TPL_NOTICE", {"name": "王", "order": "A1"})
    assert reply.ok
    [delivery] = deliveries(connections, "juncdt")
    assert delivery["params"] == {"name": "王", "order": "A1"}


def test_juncdt_batch_limit_is_a_connection_option(
    connections: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with raises(InvalidInputError, match="exceed one request"):
        JuncdtHook().send_sms(["13812348000", "13900001111"], "TPL_PLAIN")
    set_conn(monkeypatch, "juncdt_batch", juncdt_conn(connections.url, numbers_per_request=500))
    assert JuncdtHook("juncdt_batch").send_sms(["13812348000", "13900001111"], "TPL_PLAIN").ok
    assert len(deliveries(connections, "juncdt")) == 2


def test_connection_checks(connections: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = IhuyiHook().test_connection()
    assert ok and "message(s) left" in message
    set_conn(monkeypatch, "ihuyi_bad", ihuyi_conn(connections.url) | {"password": "wrong"})
    ok, message = IhuyiHook("ihuyi_bad").test_connection()
    assert not ok and "405" in message
    ok, message = JuncdtHook().test_connection()
    # What the UI's green toast shows: what was proven, not the gateway's refusal of the empty probe.
    assert ok and message == (
        "Connection to juncdt works: the gateway accepted the accessKey, accessSecret, package code and "
        "sign code. Nothing was sent; template codes are checked only by a real send."
    )
    set_conn(monkeypatch, "juncdt_bad", juncdt_conn(connections.url, classification_secret="nope"))
    ok, message = JuncdtHook("juncdt_bad").test_connection()
    assert not ok and "30025" in message
    assert deliveries(connections) == []


def test_wrong_connection_type_and_missing_secret(
    connections: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with raises(InvalidInputError, match="expected 'ihuyi'"):
        IhuyiHook("juncdt_default").get_balance()
    conn = juncdt_conn(connections.url)
    del conn["extra"]["classification_secret"]
    set_conn(monkeypatch, "juncdt_nosecret", conn)
    with raises(InvalidInputError, match="classification_secret"):
        JuncdtHook("juncdt_nosecret").send_sms("13812348000", "TPL_PLAIN")


def test_no_secret_in_logs_or_errors(
    connections: SandboxServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    texts: list[str] = []
    hook = IhuyiHook()
    hook.send_mms("13812348000", "1001")
    for forced in ("405", "4050", "0"):
        force(connections, "ihuyi", "SendMms", forced)
        with raises(Exception) as info:
            hook.send_mms("13812348000", "1001")
        texts.append(str(info.value) + repr(info.value))
    control(connections, "POST", "/_sandbox/faults", {"hang_rate": 1.0})
    set_conn(monkeypatch, "ihuyi_fast", ihuyi_conn(connections.url, timeout=0.3))
    with raises(Exception) as timeout:
        IhuyiHook("ihuyi_fast").send_mms("13812348000", "1001")
    texts.append(str(timeout.value))
    control(connections, "POST", "/_sandbox/faults", {"hang_rate": 0.0})
    JuncdtHook().send_sms("13812348000", "TPL_CODE", {"code": "1"})
    texts.append(repr(IhuyiHook().client) + repr(JuncdtHook().client))
    log = capsys.readouterr().out  # where the hooks' task loggers write
    assert "ihuyi accepted MMS 1001 for 1 number(s)" in log  # the scan below sees the hooks' log
    everything = log + "\n".join(texts)
    assert [secret for secret in SECRETS if secret in everything] == []
    assert "13812348000" not in everything


def _airflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_airflow_cli_lists_provider_and_tests_connections(gw: SandboxServer, airflow_db: object) -> None:
    env = os.environ.copy()
    env["AIRFLOW_CONN_IHUYI_DEFAULT"] = json.dumps(ihuyi_conn(gw.url))
    env["AIRFLOW_CONN_IHUYI_WRONG"] = json.dumps(ihuyi_conn(gw.url) | {"password": "wrong-pass"})
    listed = _airflow("providers", "list", env=env)
    assert "airflow-provider-sms" in listed.stdout
    good = _airflow("connections", "test", "ihuyi_default", env=env)
    assert "Connection success!" in good.stdout, good.stdout + good.stderr
    bad = _airflow("connections", "test", "ihuyi_wrong", env=env)
    assert "Connection failed!" in bad.stdout and "405" in bad.stdout
    for output in (good.stdout + good.stderr, bad.stdout + bad.stderr):
        assert IHUYI_PASSWORD not in output


def test_connection_form_metadata_is_declarative() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    widgets = manager.connection_form_widgets
    secret = widgets["extra__juncdt__classification_secret"]
    assert secret.is_sensitive
    assert "extra__ihuyi__pid" in widgets and "extra__ihuyi__requests_per_second" in widgets
    for gateway in ("ihuyi", "juncdt"):  # the contact policy's account defaults can be set in the form
        policy = {f"extra__{gateway}__{name}" for name in ("quiet_hours", "max_per_number", "per")}
        assert policy <= set(widgets)
    behaviour = manager.field_behaviours
    assert behaviour["ihuyi"]["relabeling"]["login"] == "Account (APIID)"
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks  # what a task resolves a connection type's hook with
    assert hooks["ihuyi"] is not None and hooks["juncdt"] is not None


def test_a_task_concurrency_above_the_connections_gets_a_connection_per_worker(
    connections: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The connection says 2; the task asks for 8 workers. With a pool of 2, six requests would wait for
    # a connection inside their timeout and end ambiguous (never resent) though the gateway is fine.
    from airflow_provider_sms.dispatch.settings import SendSettings

    set_conn(monkeypatch, "juncdt_default", juncdt_conn(connections.url, concurrency=2, timeout=3))
    control(connections, "POST", "/_sandbox/faults", {"latency_ms": 1200})
    numbers = [f"1380013{i:04d}" for i in range(8)]
    summary = JuncdtHook().send_bulk(numbers, "TPL_CODE", {"code": "1"}, bulk=SendSettings(concurrency=8))
    assert summary.counts["accepted"] == 8 and summary.counts["ambiguous"] == 0


@pytest.mark.parametrize("secret_key", ["classification_secret", "extra__juncdt__classification_secret"])
@pytest.mark.parametrize("source", ["environment", "object"])
def test_every_secret_is_registered_with_airflows_masker(
    gw: SandboxServer, monkeypatch: pytest.MonkeyPatch, secret_key: str, source: str
) -> None:
    """Whatever logs a secret later (Airflow's task log, a user's own log line) shows ``***``.

    ``environment``: the connection comes through Airflow's secrets backends, which register some
    fields themselves. ``object``: a ``Connection`` built in code, that nothing registered: the hook must.
    """
    from uuid import uuid4

    from airflow.sdk import Connection

    # The masker that airflow.sdk.log.mask_secret registers with.
    from airflow.sdk._shared.secrets_masker import redact

    password, access_secret, package_code = (f"{name}-{uuid4().hex}" for name in ("pw", "as", "pkg"))
    conns = {"ihuyi_masked": ihuyi_conn(gw.url) | {"password": password}}
    juncdt = juncdt_conn(gw.url) | {"password": access_secret}
    juncdt["extra"] = {k: v for k, v in juncdt["extra"].items() if k != "classification_secret"}
    juncdt["extra"][secret_key] = package_code
    conns["juncdt_masked"] = juncdt
    for conn_id, conn in conns.items():
        set_conn(monkeypatch, conn_id, conn)
    if source == "object":

        def built_in_code(conn_id: str) -> Connection:
            fields = conns[conn_id] | {"extra": json.dumps(conns[conn_id]["extra"])}
            return Connection(conn_id=conn_id, **fields)

        for hook_class in (IhuyiHook, JuncdtHook):
            monkeypatch.setattr(hook_class, "get_connection", staticmethod(built_in_code))
    secrets = (password, access_secret, package_code)
    assert [s for s in secrets if s in redact(f"a {s} b")] == list(secrets)  # new: not masked yet
    assert IhuyiHook("ihuyi_masked").client.url.startswith(gw.url)
    assert JuncdtHook("juncdt_masked").client.url.startswith(gw.url)
    assert [redact(f"a {s} b") for s in secrets] == ["a *** b"] * 3


def test_a_hook_owns_its_client_and_closes_it(connections: SandboxServer) -> None:
    with IhuyiHook() as hook:
        client = hook.get_conn()
        assert hook.get_balance() > 0
        http = client.http
    assert http.is_closed
    again = hook.get_conn()  # a hook used after close builds a new client
    assert again is not client
    hook.close()


def test_a_bulk_send_runs_on_a_pool_of_its_own_and_leaves_the_hooks_client_as_built(
    connections: SandboxServer,
) -> None:
    from airflow_provider_sms.dispatch.settings import SendSettings

    with IhuyiHook() as hook:
        client = hook.get_conn()
        summary = hook.send_bulk(["13800000001", "13800000002"], "1001", bulk=SendSettings(concurrency=3))
        assert summary.counts["accepted"] == 2
        assert hook.get_conn() is client
        assert client.max_connections == hook.tuning.concurrency == 16

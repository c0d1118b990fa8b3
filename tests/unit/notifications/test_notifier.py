"""SmsNotifier: rendered from a real failing task's context, and never hiding that task's error."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.notifications.sms import DEFAULT_PARAMS, SmsNotifier, send_sms_notification
from airflow_provider_sms.sandbox.server import SandboxServer
from airflow_provider_sms.sandbox.state import JUNCDT_TEMPLATES
from tests.airflow32 import dag_test_gives_callbacks_the_exception
from tests.helpers import control, deliveries, force, juncdt_conn, run_dag, set_conn

ON_CALL = "13800138000"
RECORD = Path(os.environ["AIRFLOW_HOME"]) / "sms_test_notifier_seen.json"

# A failing task whose callbacks are the notifier, then a recorder of the error the task itself raised.
DAGS_SOURCE = f'''
import json
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_provider_sms.notifications.sms import SmsNotifier


def record(context):
    with open({str(RECORD)!r}, "w") as out:
        json.dump({{"exception": repr(context.get("exception"))}}, out)


with DAG("sms_test_notifier_hidden_error", schedule=None, start_date=datetime(2026, 1, 1),
         default_args={{"retries": 0}}) as dag:
    @task(on_failure_callback=[SmsNotifier(phones="{ON_CALL}", template_code="TPL_ALERT"), record])
    def etl():
        raise ValueError("ETL step failed: the real error")

    etl()
'''
Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], "sms_test_notifier_dags.py").write_text(DAGS_SOURCE)

pytestmark = pytest.mark.usefixtures("airflow_db")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def juncdt_requests(server: SandboxServer) -> list[dict[str, Any]]:
    data = control(server, "GET", "/_sandbox/requests")
    return [r for r in (data["requests"] if isinstance(data, dict) else data) if r["gateway"] == "juncdt"]


def test_default_params_match_the_alert_template() -> None:
    assert set(DEFAULT_PARAMS) == set(JUNCDT_TEMPLATES["TPL_ALERT"][1])


def test_failure_alert_rendered_from_a_real_failing_run(connections: SandboxServer) -> None:
    result = run_dag("example_sms_failure_alert")
    assert result.state == "failed"
    assert result.task("load_orders") == "failed"
    [sent] = deliveries(connections, "juncdt")
    assert sent["number"] == ON_CALL and sent["template_code"] == "TPL_ALERT"
    params = sent["params"]
    assert params["dag"] == "example_sms_failure_alert"
    assert params["task"] == "load_orders"
    assert params["try"] == "1"
    assert "/dags/example_sms_failure_alert/runs/" in params["url"] and "/tasks/load_orders" in params["url"]


@pytest.mark.parametrize("breakage", ["fatal code", "closed port"])
def test_failing_notification_does_not_hide_the_task_error(
    connections: SandboxServer, monkeypatch: pytest.MonkeyPatch, breakage: str
) -> None:
    if breakage == "fatal code":
        force(connections, "juncdt", "sendMessage", "30022", times=5)
    else:
        set_conn(monkeypatch, "juncdt_default", juncdt_conn(f"http://127.0.0.1:{closed_port()}"))
    RECORD.unlink(missing_ok=True)
    result = run_dag("sms_test_notifier_hidden_error")
    assert result.task("etl") == "failed" and result.state == "failed"
    seen = json.loads(RECORD.read_text())  # the callback after the notifier still ran ...
    if dag_test_gives_callbacks_the_exception():
        assert "ETL step failed: the real error" in seen["exception"]  # ... and saw the task's own error
    assert deliveries(connections, "juncdt") == []


def test_notify_never_raises_and_masks_numbers(
    connections: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_conn(monkeypatch, "juncdt_default", juncdt_conn(f"http://127.0.0.1:{closed_port()}"))
    notifier = SmsNotifier(phones=[ON_CALL, "13900139000"], template_code="TPL_CODE", params={"code": "1"})
    with caplog.at_level(logging.INFO):
        notifier({})  # type: ignore[arg-type]
    out, err = capfd.readouterr()
    text = out + err + caplog.text  # Airflow's structlog writes to stdout
    assert "138****8000" in text and "139****9000" in text
    assert ON_CALL not in text and "13900139000" not in text


def test_broken_template_does_not_raise(connections: SandboxServer) -> None:
    notifier = SmsNotifier(phones=ON_CALL, template_code="TPL_ALERT")  # needs a task context: none here
    notifier({})  # type: ignore[arg-type]
    assert deliveries(connections, "juncdt") == []


def test_one_request_per_phone_and_success_callback(connections: SandboxServer) -> None:
    notifier = send_sms_notification(
        phones=f"{ON_CALL}, +86 139-0013-9000", template_code="TPL_CODE", params={"code": "{{ run_id }}"}
    )
    notifier({"run_id": "42"})  # type: ignore[arg-type]
    sent = deliveries(connections, "juncdt")
    assert {d["number"] for d in sent} == {ON_CALL, "13900139000"}
    assert all(d["params"] == {"code": "42"} for d in sent)
    assert len(juncdt_requests(connections)) == 2


def test_one_bad_number_does_not_silence_the_others(connections: SandboxServer) -> None:
    SmsNotifier(phones=["12345", ON_CALL], template_code="TPL_CODE", params={"code": "7"})({})  # type: ignore[arg-type]
    assert [d["number"] for d in deliveries(connections, "juncdt")] == [ON_CALL]


def test_phones_template_that_does_not_render_is_logged_without_the_numbers(
    connections: SandboxServer, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SmsNotifier(
        phones=[ON_CALL, "{{ on_call | no_such_filter }}"], template_code="TPL_CODE", params={"code": "1"}
    )
    with caplog.at_level(logging.INFO):
        notifier({})  # type: ignore[arg-type]
    out, err = capfd.readouterr()
    text = out + err + caplog.text
    assert "the 'phones' template did not render: TemplateAssertionError: No filter named" in text
    assert ON_CALL not in text  # Airflow's own error log would quote the list
    assert deliveries(connections, "juncdt") == []

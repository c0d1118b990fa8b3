"""Operators through real Airflow task execution (``dag.test()``) against the sandbox."""

from __future__ import annotations

import collections
import csv
import json
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import ROOT, control, deliveries, force, raises, run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_etl_then_personalised_sms(
    connections: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_SMS_REPORT_DIR", str(tmp_path))
    result = run_dag("example_sms_after_etl")
    assert result.state == "success", result.tasks
    summary = result.xcom("notify_shipped")
    assert summary["accepted"] == 3 and summary["duplicate"] == 1 and summary["total"] == 4
    got = {d["number"]: d["params"] for d in deliveries(connections, "juncdt")}
    assert got == {
        "13800138001": {"name": "王芳", "order": "A1001"},
        "13900138002": {"name": "李雷", "order": "A1002"},
        "13700138003": {"name": "赵敏", "order": "A1003"},
    }
    [report] = list(tmp_path.glob("shipped-*.csv"))
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    assert len(rows) == 4 and all("****" in r["phone"] for r in rows)
    assert len(json.dumps(summary)) < 2048  # a summary, never the audience
    # The Rendered Template view (and Airflow's database) shows how many and the first few, masked;
    # neither the numbers nor the rows' personal params.
    shown = result.rendered[("notify_shipped", -1)]["recipients"]
    first = ["138******8001", "+86**********8002", "138****8001"]  # as given: "138 0013 8001", ...
    assert shown == {"recipients": 4, "first (masked)": first}
    assert "王芳" not in json.dumps(list(result.rendered.values()), ensure_ascii=False)


def test_balance_gated_campaign(
    connections: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_EXAMPLE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMS_EXAMPLE_AUDIENCE", "1500")
    control(connections, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 100}})

    def recharge() -> None:
        time.sleep(4)
        control(connections, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 5000}})

    threading.Thread(target=recharge, daemon=True).start()
    started = time.monotonic()
    result = run_dag("example_mms_campaign")
    assert result.state == "success", result.tasks
    assert time.monotonic() - started > 4  # the sensor waited for the recharge
    template_id = result.xcom("upload_template")
    summary = result.xcom("send_campaign")
    assert summary["accepted"] == 1500 and summary["rejected"] == 1 and summary["duplicate"] == 1
    sent = deliveries(connections, "ihuyi")
    assert len(sent) == 1500 == len({d["number"] for d in sent})
    assert {d["mmsid"] for d in sent} == {template_id}
    state = control(connections, "GET", "/_sandbox/state")
    assert state["ihuyi"]["balance"] == 5000 - 1500


def test_mapped_campaign_shares_one_dedupe_key(
    connections: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_SMS_CHUNK_BASE", tmp_path.as_uri())
    result = run_dag("example_sms_mapped_campaign")
    assert result.state == "success", result.tasks
    summaries = [result.xcom("send_chunk", map_index=i) for i in range(3)]
    assert sum(s["accepted"] for s in summaries) == 320
    assert sum(s["skipped"] for s in summaries) == 40
    sent = [d["number"] for d in deliveries(connections, "juncdt")]
    assert len(sent) == len(set(sent)) == 320
    assert len(list(tmp_path.glob("chunks-*/part-*.csv"))) == 3  # under the sms_chunk_base Variable


def test_no_example_dag_sends_on_a_schedule() -> None:
    """Unpausing an example must not text anyone: each one runs only when triggered."""
    import importlib.util

    examples = ROOT / "example_dags"
    schedules = {}
    for path in sorted(examples.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for value in vars(module).values():
            if hasattr(value, "dag_id") and hasattr(value, "timetable"):
                schedules[value.dag_id] = value.schedule
    assert "example_mms_campaign" in schedules and len(schedules) == 5
    assert schedules == dict.fromkeys(schedules)


def test_fatal_answer_fails_the_task_and_still_reports(connections: SandboxServer, tmp_path: Path) -> None:
    control(connections, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 250}})
    report = tmp_path / "report.jsonl"
    mobiles = [f"138{i:08d}" for i in range(1000)]
    result = run_dag("sms_test_mms", run_conf={"mobiles": mobiles, "report_uri": str(report)})
    assert result.task("send") == "failed"
    summary = result.xcom("send", key="summary")
    assert summary["accepted"] == 200 and "4051" in summary["stopped"]
    lines = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 1000
    assert sum(1 for line in lines if line["outcome"] == "accepted") == 200


def test_bad_input_fails_before_any_request(connections: SandboxServer) -> None:
    for conf in (
        {"mobiles": []},
        {"mobiles": ["13800000001"], "mmsid": "abc"},
        {"mobiles": ["13800000001"], "send_time": "2001-01-01 00:00:00"},
        {"mobiles": ["13800000001"], "dry_run": "ture"},  # a typo must not mean "send for real"
    ):
        result = run_dag("sms_test_mms", run_conf=conf)
        assert result.task("send") == "failed", conf
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []


def test_an_audience_template_that_does_not_render_fails_without_showing_the_numbers(
    connections: SandboxServer, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_dag("sms_test_bad_audience_template")
    assert result.task("send") == "failed"
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []
    log = "".join(capfd.readouterr())
    assert "the 'recipients' template did not render: TemplateAssertionError: No filter named" in log
    # Airflow itself would log the unrendered list, numbers and all.
    assert "13800138000" not in log and "13900139000" not in log


def test_dry_run_through_airflow(connections: SandboxServer) -> None:
    result = run_dag(
        "sms_test_mms", run_conf={"mobiles": [f"139{i:08d}" for i in range(250)], "dry_run": True}
    )
    assert result.task("send") == "success"
    summary = result.xcom("send")
    assert summary["dry_run"] and summary["estimate"]["requests"] == 3
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []


def test_an_undocumented_answer_to_the_balance_guard_fails_without_a_retry(
    connections: SandboxServer,
) -> None:
    force(connections, "ihuyi", "GetNum", "9999", times=5)
    result = run_dag("sms_test_mms_guarded", run_conf={"mobiles": ["13800000001"]})
    assert result.task("send") == "failed"
    methods = [r["method"] for r in control(connections, "GET", "/_sandbox/requests")["requests"]]
    assert methods == ["GetNum"]  # one try: a retry would ask again, and SendMms never went out


def _methods(server: SandboxServer) -> list[str]:
    return [r["method"] for r in control(server, "GET", "/_sandbox/requests")["requests"]]


def test_balance_guard_sends_nothing_when_short(
    connections: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The gateway would refuse the whole request anyway (4051): only the request log shows the guard.
    control(connections, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 10}})
    result = run_dag("sms_test_mms_guarded", run_conf={"mobiles": [f"137{i:08d}" for i in range(11)]})
    assert result.task("send") == "failed"
    assert _methods(connections) == ["GetNum"]  # one try (no retry), and no SendMms ever left
    assert "ihuyi balance 10 does not cover 11 recipient(s); nothing was sent" in capsys.readouterr().out
    assert control(connections, "GET", "/_sandbox/state")["ihuyi"]["balance"] == 10


def test_balance_guard_lets_an_exact_balance_through(connections: SandboxServer) -> None:
    control(connections, "POST", "/_sandbox/accounts", {"ihuyi": {"balance": 11}})
    result = run_dag("sms_test_mms_guarded", run_conf={"mobiles": [f"137{i:08d}" for i in range(11)]})
    assert result.task("send") == "success"
    assert result.xcom("send")["accepted"] == 11
    assert _methods(connections) == ["GetNum", "SendMms"]
    assert control(connections, "GET", "/_sandbox/state")["ihuyi"]["balance"] == 0


def test_rerun_with_dedupe_key_texts_nobody_twice(connections: SandboxServer) -> None:
    conf = {"mobiles": [f"136{i:08d}" for i in range(300)], "dedupe_key": "promo-test-rerun"}
    first = run_dag("sms_test_mms", run_conf=conf)
    second = run_dag("sms_test_mms", run_conf={**conf, "mobiles": [*conf["mobiles"], "13699999999"]})
    assert first.xcom("send")["accepted"] == 300
    assert second.xcom("send")["accepted"] == 1 and second.xcom("send")["skipped"] == 300
    sent = [d["number"] for d in deliveries(connections)]
    assert len(sent) == len(set(sent)) == 301


def test_upload_and_send_operators_are_mappable(connections: SandboxServer) -> None:
    result = run_dag("sms_test_mapped_mms")
    assert result.state == "success", result.tasks
    template_ids = [result.xcom("upload", map_index=i) for i in range(2)]
    assert len(set(template_ids)) == 2 and all(str(t).isdigit() for t in template_ids)
    summaries = [result.xcom("send", map_index=i) for i in range(2)]
    assert [s["accepted"] for s in summaries] == [150, 150]
    assert [s["requests"] for s in summaries] == [3, 3]
    sent = collections.Counter(str(d["mmsid"]) for d in deliveries(connections, "ihuyi"))
    assert sent == {str(t): 150 for t in template_ids}


def test_a_ledger_connection_must_be_postgres_or_sqlite_with_a_hash_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_sms.errors import InvalidInputError
    from airflow_provider_sms.hooks.ledger import SmsLedgerHook

    key = {"hash_key": "k" * 32}
    mysql = {
        "conn_type": "mysql",
        "host": "db",
        "login": "u",
        "password": "pw",
        "schema": "sms",
        "extra": key,
    }
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_MYSQL", json.dumps(mysql))
    with raises(InvalidInputError, match="use postgres or sqlite"):
        SmsLedgerHook("ledger_mysql").url_and_key()
    postgres = {**mysql, "conn_type": "postgres", "port": 5432}
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_PG", json.dumps(postgres))
    assert SmsLedgerHook("ledger_pg").url_and_key()[0] == "postgresql+psycopg2://u:pw@db:5432/sms"
    # A shared ledger needs the key every worker hashes numbers with; it is not in the database.
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_NOKEY", json.dumps({**postgres, "extra": {}}))
    with raises(InvalidInputError, match="needs the extra 'hash_key'"):
        SmsLedgerHook("ledger_nokey").url_and_key()


@pytest.mark.parametrize(
    ("audience", "shown"),
    [
        ("13800138000,13900139000", {"recipients": 2, "first (masked)": ["138****8000", "139****9000"]}),
        ([13800138000], {"recipients": 1, "first (masked)": ["138****8000"]}),
        ([{"mobile": "13800138000", "name": "王芳"}], {"recipients": 1, "first (masked)": ["138****8000"]}),
        ([{"params": {"code": "1"}}], {"recipients": 1, "first (masked)": [""]}),  # no phone: refused later
        (iter(["13800138000"]), {"recipients": None, "first (masked)": []}),  # one-shot: not read here
    ],
)
def test_what_airflow_shows_of_an_inline_audience(audience: object, shown: dict[str, object]) -> None:
    from airflow_provider_sms.operators.bulk import RenderedAudience

    assert RenderedAudience(audience).serialize() == shown


def test_template_params_are_the_messages_and_params_stay_airflows(connections: SandboxServer) -> None:
    """``template_params`` fill the template; Airflow's ``params`` (the DAG's and the task's) are never
    sent, and stay what Airflow makes of them."""
    from datetime import datetime

    from airflow.sdk import DAG

    from airflow_provider_sms.operators.sms import SmsSendOperator

    with DAG("sms_test_params_apart", schedule=None, start_date=datetime(2026, 1, 1), params={"region": "n"}):
        op = SmsSendOperator(
            task_id="send",
            recipients=["13800000001"],
            template_code="TPL_CODE",
            template_params={"code": "1234"},
            params={"batch": "7"},
        )
    assert op.template_params == {"code": "1234"}
    assert {"region", "batch"} <= set(op.params)
    summary = op.hook.send_bulk(op.recipients, op.template_code, op.template_params)
    assert summary.counts["accepted"] == 1
    assert [d["params"] for d in deliveries(connections, "juncdt")] == [{"code": "1234"}]

"""The contact policy: suppression, frequency cap, opt-out text, audience guard, quiet hours.

The rules alone first (no Airflow), then each through real Airflow task runs against the sandbox.
Quiet hours never depend on the hour the suite runs: the tests give windows relative to now, to the
second, or fixed datetimes.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_sms.dispatch.policy import AudienceGuard, QuietHours, SuppressionList, check_opt_out
from airflow_provider_sms.dispatch.settings import SendSettings, send_settings
from airflow_provider_sms.errors import InvalidInputError, SourceUnavailableError
from airflow_provider_sms.hooks.policy import load_suppression
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import control, deliveries, raises, run_dag
from tests.pgserver import free_port

SHANGHAI = ZoneInfo("Asia/Shanghai")
HASH_KEY = "policy-test-hash-key-of-32-characters-or-more"
NUMBERS = [f"1390000{i:04d}" for i in range(6)]


# ----- the rules, without Airflow ---------------------------------------------------------------------
def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 10, hour, minute, tzinfo=SHANGHAI)


def test_quiet_hours_window_by_the_clock() -> None:
    window = QuietHours.parse("08:00-21:00")
    assert window is not None
    assert [window.is_open(at(h)) for h in (7, 8, 20, 21, 23)] == [False, True, True, False, False]
    assert window.next_open(at(23)) == at(8) + timedelta(days=1)
    assert window.next_open(at(6)) == at(8)
    assert window.closes_at(at(12)) == at(21)
    # Another zone's clock: 13:30 UTC is 21:30 in Shanghai.
    assert not window.is_open(datetime(2026, 3, 10, 13, 30, tzinfo=timezone.utc))
    night = QuietHours.parse("22:00-06:00")  # across midnight
    assert night is not None and night.is_open(at(23)) and night.is_open(at(5)) and not night.is_open(at(12))
    assert night.closes_at(at(23)) == at(6) + timedelta(days=1)
    assert QuietHours.parse("off") is None


@pytest.mark.parametrize(
    ("given", "error"),
    [
        (
            {"quiet_hours": "08:00"},
            "quiet_hours must be a window such as '08:00-21:00' or 'off', got '08:00'",
        ),
        ({"quiet_hours": "8-21"}, "quiet_hours '8' is not a time of day"),
        ({"quiet_hours": "08:00-25:00"}, "not a time of day"),
        ({"quiet_hours_timezone": "Mars/Olympus"}, "must be an IANA time zone"),
        ({"per": "a day"}, "per must be a duration such as '24h'"),
        ({"max_per_number": 0}, "max_per_number must be between 1 and 1000, got 0"),
        ({"purpose": "promo"}, "purpose must be 'marketing', 'notification' or 'verification'"),
        ({"opt_out_pattern": "(R"}, "opt_out_pattern must be a regular expression"),
    ],
)
def test_bad_policy_settings_are_refused_by_name(given: dict[str, Any], error: str) -> None:
    with raises(InvalidInputError, match=error.replace("(", r"\(").replace(")", r"\)")):
        send_settings(given)


@pytest.mark.parametrize(
    "text", ["【店】新品上市，拒收请回复R", "秋季特惠，回T退订", "特惠 退订回TD", "活动 回复TD退订"]
)
def test_opt_out_forms_carriers_ask_for(text: str) -> None:
    check_opt_out(text)


def test_a_marketing_text_without_opt_out_is_refused() -> None:
    with raises(InvalidInputError, match="must tell how to opt out"):
        check_opt_out("秋季特惠，全场五折 ${code}")


def test_suppression_list_normalises_and_ignores_what_is_not_a_number() -> None:
    listed = SuppressionList(["+86 139 0000 0001", "13900000002", "phone", "010-1234"])
    assert len(listed) == 2 and listed.invalid == 2
    assert "13900000001" in listed and "13900000002" in listed and "13900000003" not in listed


def test_audience_guard() -> None:
    AudienceGuard(max_recipients=3).check(3)
    with raises(InvalidInputError, match="more than max_recipients=3"):
        AudienceGuard(max_recipients=3).check(4)
    AudienceGuard(expected_recipients=100, tolerance=0.1).check(90)
    with raises(InvalidInputError, match="expected 100 within 10%"):
        AudienceGuard(expected_recipients=100, tolerance=0.1).check(89)


def test_only_marketing_gets_quiet_hours() -> None:
    assert SendSettings().window is not None
    assert SendSettings(purpose="notification").window is None
    assert SendSettings(quiet_hours="off").window is None


# ----- through Airflow, against the sandbox -----------------------------------------------------------
@pytest.fixture
def ledger_db(airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite ledger for the test, as the DAGs' ``sms_policy_ledger`` connection (and the
    metadata database the DAG runs need)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    conn = {"conn_type": "generic", "extra": {"sqlalchemy_url": url, "hash_key": HASH_KEY}}
    monkeypatch.setenv("AIRFLOW_CONN_SMS_POLICY_LEDGER", json.dumps(conn))
    return url


def send(conf: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    result = run_dag("sms_test_policy", run_conf=conf)
    return result.task("send"), result.xcom("send", "summary") or {}


def sent_numbers(server: SandboxServer) -> list[str]:
    return [str(d["number"]) for d in deliveries(server)]


def test_suppression_from_a_file(connections: SandboxServer, ledger_db: str, tmp_path: Path) -> None:
    listed = tmp_path / "optouts.txt"
    listed.write_text(f"+86 {NUMBERS[0]}\n\n{NUMBERS[3]}\nnot a number\n", encoding="utf-8")
    state, summary = send({"recipients": NUMBERS, "suppression_uri": f"file://{listed}"})
    assert state == "success"
    assert (summary["suppressed"], summary["accepted"], summary["total"]) == (2, 4, 6)
    assert summary["purpose"] == "marketing" and summary["policy"]["suppression_list"] == 2
    assert sorted(sent_numbers(connections)) == sorted(set(NUMBERS) - {NUMBERS[0], NUMBERS[3]})


def test_suppression_from_a_sql_connection(
    connections: SandboxServer, ledger_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "crm.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE optouts (phone TEXT, source TEXT)")
        db.executemany("INSERT INTO optouts VALUES (?, 'reply')", [(NUMBERS[1],), (NUMBERS[2],)])
    monkeypatch.setenv("AIRFLOW_CONN_CRM", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    conf = {
        "recipients": NUMBERS,
        "suppression_conn_id": "crm",
        "suppression_sql": "SELECT phone FROM optouts",
    }
    state, summary = send(conf)
    assert state == "success" and (summary["suppressed"], summary["accepted"]) == (2, 4)
    assert NUMBERS[1] not in sent_numbers(connections) and NUMBERS[2] not in sent_numbers(connections)


def test_a_suppression_database_that_is_down_fails_the_task_for_airflow_to_retry(
    connections: SandboxServer, ledger_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql://crm:crm-password@127.0.0.1:{free_port()}/crm"  # nothing listens: refused
    crm = {"conn_type": "generic", "extra": {"sqlalchemy_url": url}}
    monkeypatch.setenv("AIRFLOW_CONN_CRM_DOWN", json.dumps(crm))
    conf = {"recipients": NUMBERS, "suppression_conn_id": "crm_down", "suppression_sql": "SELECT 1"}
    result = run_dag("sms_test_policy_retry", run_conf=conf)
    assert result.task("send") == "failed" and result.tries[("send", -1)] == 2  # retried, as it may pass
    assert deliveries(connections) == []  # an unread list never means "nobody is suppressed"
    with raises(SourceUnavailableError, match="suppression list could not be read") as error:
        load_suppression(send_settings({"suppression_conn_id": "crm_down", "suppression_sql": "SELECT 1"}))
    assert error.value.retryable and "nothing was sent" in str(error.value)


@pytest.mark.parametrize(
    "source",
    [
        {"suppression_uri": "file:///nonexistent/optouts.txt"},
        {"suppression_conn_id": "crm", "suppression_sql": "SELECT phone FROM no_such_table"},
    ],
    ids=["missing file", "bad query"],
)
def test_a_suppression_source_only_a_person_can_fix_fails_without_retry(
    source: dict[str, str],
    connections: SandboxServer,
    ledger_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = tmp_path / "crm.db"
    sqlite3.connect(database).close()
    monkeypatch.setenv("AIRFLOW_CONN_CRM", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    result = run_dag("sms_test_policy_retry", run_conf={"recipients": NUMBERS, **source})
    assert result.task("send") == "failed" and result.tries[("send", -1)] == 1  # a retry cannot help
    assert deliveries(connections) == []
    with raises(InvalidInputError, match="suppression list could not be read"):
        load_suppression(send_settings(source))


@pytest.mark.parametrize(
    ("crm", "error"),
    [
        ({"conn_type": "generic", "host": "crm.internal"}, "of type 'generic' is not supported"),
        ({"conn_type": "generic", "extra": {"sqlalchemy_url": "mysql://u:pw@crm/db"}}, "not 'mysql'"),
    ],
    ids=["no provider, no URL", "a URL of another database"],
)
def test_a_suppression_connection_that_cannot_be_read_is_named_as_such(
    crm: dict[str, Any], error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The error names the suppression list's connection, not the ledger the user may never have set.
    monkeypatch.setenv("AIRFLOW_CONN_CRM_ODD", json.dumps(crm))
    source = {"suppression_conn_id": "crm_odd", "suppression_sql": "SELECT phone FROM optouts"}
    with raises(InvalidInputError, match=error) as caught:
        load_suppression(send_settings(source))
    assert str(caught.value).startswith("suppression list connection 'crm_odd'")
    assert "ledger" not in str(caught.value)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_ledger_suppression_table(
    backend: str,
    connections: SandboxServer,
    ledger_db: str,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_sms.hooks.ledger import SmsLedgerHook

    if backend == "postgresql":
        url = postgres_url
        conn = {"conn_type": "generic", "extra": {"sqlalchemy_url": url, "hash_key": HASH_KEY}}
        monkeypatch.setenv("AIRFLOW_CONN_SMS_POLICY_LEDGER", json.dumps(conn))
    hook = SmsLedgerHook("sms_policy_ledger")
    with raises(InvalidInputError, match="invalid phone number"):
        hook.add_suppressions(["12345"])  # refused whole: nothing written
    assert hook.add_suppressions([f"+86{NUMBERS[4]}", NUMBERS[5]], reason="reply TD") == 2
    assert hook.add_suppressions([NUMBERS[5]]) == 0  # already there
    state, summary = send({"recipients": NUMBERS, "dedupe_key": f"table-{backend}-{time.time()}"})
    assert state == "success" and (summary["suppressed"], summary["accepted"]) == (2, 4)
    assert not {NUMBERS[4], NUMBERS[5]} & set(sent_numbers(connections))


def test_the_cap_spans_campaigns(connections: SandboxServer, ledger_db: str) -> None:
    first = {"recipients": NUMBERS[:3], "dedupe_key": "spring-1", "max_per_number": 1}
    assert send(first)[0] == "success"
    second = {"recipients": NUMBERS, "dedupe_key": "spring-2", "max_per_number": 1, "per": "24h"}
    state, summary = send(second)
    assert state == "success"
    assert (summary["capped"], summary["accepted"]) == (3, 3)
    assert summary["policy"]["max_per_number"] == 1 and summary["policy"]["per"] == "24h"
    assert sorted(sent_numbers(connections)) == sorted(NUMBERS)  # each number texted once in all
    # With a cap of two, a third campaign may text the first three once more (one message each so far).
    third = {"recipients": NUMBERS[:3], "dedupe_key": "spring-3", "max_per_number": 2}
    assert send(third)[1]["accepted"] == 3


def test_a_marketing_template_needs_its_opt_out_text(connections: SandboxServer, ledger_db: str) -> None:
    def run(dag_id: str) -> tuple[str, dict[str, Any]]:
        result = run_dag(dag_id, run_conf={"recipients": NUMBERS})
        return result.task("send"), result.xcom("send", "summary") or {}

    assert run("sms_test_policy_no_opt_out")[0] == "failed" and sent_numbers(connections) == []
    state, summary = run("sms_test_policy_opt_out")
    assert state == "success" and summary["accepted"] == 6 and summary["policy"]["opt_out_text_checked"]
    control(connections, "POST", "/_sandbox/reset")
    state, summary = run("sms_test_policy_verification")  # not marketing: no opt-out needed
    assert state == "success" and summary["accepted"] == 6 and summary["purpose"] == "verification"


@pytest.mark.parametrize(
    "guard", [{"max_recipients": 5}, {"expected_recipients": 10}, {"expected_recipients": 5, "dry_run": True}]
)
def test_the_audience_guard_fails_before_anything_is_sent(
    guard: dict[str, Any], connections: SandboxServer, ledger_db: str
) -> None:
    state, _ = send({"recipients": [*NUMBERS, NUMBERS[0]], **guard})
    assert state == "failed" and sent_numbers(connections) == []
    # Duplicates and bad rows do not count: six unique recipients pass an expectation of 6.
    state, summary = send({"recipients": [*NUMBERS, NUMBERS[0], "123"], "expected_recipients": 6})
    assert state == "success" and summary["accepted"] == 6


def test_a_dry_run_shows_the_policy_effect_and_the_cost(
    connections: SandboxServer, ledger_db: str, tmp_path: Path
) -> None:
    assert send({"recipients": NUMBERS[:2], "dedupe_key": "earlier", "max_per_number": 1})[0] == "success"
    listed = tmp_path / "optouts.csv"
    listed.write_text(f"name,phone\nA,{NUMBERS[5]}\n", encoding="utf-8")
    conf = {
        "recipients": NUMBERS,
        "dedupe_key": "planned",
        "max_per_number": 1,
        "suppression_uri": str(listed),
        "price_per_message": 0.05,
        "dry_run": True,
    }
    state, summary = send(conf)
    assert state == "success" and summary["dry_run"]
    assert (summary["capped"], summary["suppressed"], summary["not_sent"]) == (2, 1, 3)
    assert summary["estimate"]["estimated_cost"] == 0.15
    assert len(deliveries(connections)) == 2  # only the earlier campaign's


# ----- quiet hours ----------------------------------------------------------------------------------
def clock(seconds_from_now: float) -> str:
    """A time of day in Shanghai, to the second, ``seconds_from_now``."""
    return (datetime.now(SHANGHAI) + timedelta(seconds=seconds_from_now)).strftime("%H:%M:%S")


def quiet_hours_run(audience: list[str], opens_in: int, closes_in: int) -> tuple[str, dict[str, Any], float]:
    """Run ``sms_test_quiet_hours``: its first task fixes the window relative to when it runs; returns
    the send's state and summary, and when the window opened (epoch seconds)."""
    result = run_dag(
        "sms_test_quiet_hours", run_conf={"mobiles": audience, "opens_in": opens_in, "closes_in": closes_in}
    )
    opens = result.xcom("window").split("-")[0]
    today = datetime.now(SHANGHAI)
    opened = datetime.combine(today.date(), datetime.strptime(opens, "%H:%M:%S").time(), SHANGHAI)
    if opened > today:  # the window opened yesterday, by Shanghai's date
        opened -= timedelta(days=1)
    return result.task("send"), result.xcom("send", "summary") or {}, opened.timestamp()


def test_a_campaign_started_in_quiet_hours_defers_then_sends(
    connections: SandboxServer, ledger_db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # The window opens 8 s after the run's first task: the send defers (a trigger, no worker slot),
    # then sends once it opens.
    state, summary, opened = quiet_hours_run(NUMBERS, 8, 3600)
    assert state == "success" and summary["accepted"] == 6 and summary["deferred"] == 0
    assert "deferring until then" in capfd.readouterr().out  # it did wait: the run did not start late
    assert min(d["at"] for d in deliveries(connections)) >= opened


def test_a_notification_ignores_quiet_hours(connections: SandboxServer, ledger_db: str) -> None:
    closed = f"{clock(3600)}-{clock(7200)}"
    state, summary = send({"recipients": NUMBERS, "quiet_hours": closed, "purpose": "notification"})
    assert state == "success" and summary["accepted"] == 6 and summary["policy"]["quiet_hours"] is None


def test_a_campaign_crossing_the_window_end_stops_defers_and_resumes(
    connections: SandboxServer, ledger_db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    audience = [f"1370000{i:04d}" for i in range(400)]
    control(connections, "POST", "/_sandbox/faults", {"latency_ms": 60})  # about 30 numbers a second
    # Open now; closed from 8 s to 13 s after the first task (a window across its clock's midnight).
    state, summary, _ = quiet_hours_run(audience, 13, 8)
    assert state == "success"
    assert "recipient(s) deferred until" in capfd.readouterr().out  # it stopped at the window's end
    sent = sent_numbers(connections)
    assert sorted(sent) == sorted(audience)  # everyone once: nobody twice, nobody lost
    # The resumed run reports what went out before the quiet hours as accepted_earlier.
    assert summary["accepted_earlier"] > 0 and summary["accepted"] > 0
    assert summary["accepted_earlier"] + summary["accepted"] == summary["total"] == 400
    assert summary["deferred"] == 0
    times = sorted(d["at"] for d in deliveries(connections))
    assert max(b - a for a, b in itertools.pairwise(times)) >= 3  # none while it was closed


def test_an_mms_send_time_in_quiet_hours_is_refused(connections: SandboxServer, ledger_db: str) -> None:
    tomorrow = datetime.now(SHANGHAI).date() + timedelta(days=1)
    late = datetime.combine(tomorrow, datetime.min.time(), SHANGHAI).replace(hour=23)
    conf = {"mobiles": NUMBERS, "quiet_hours": "08:00-21:00", "send_time": late.strftime("%Y-%m-%d %H:%M:%S")}
    result = run_dag("sms_test_policy_mms", run_conf=conf)
    assert result.task("send") == "failed" and sent_numbers(connections) == []
    conf["send_time"] = late.replace(hour=10).strftime("%Y-%m-%d %H:%M:%S")
    result = run_dag("sms_test_policy_mms", run_conf=conf)
    assert result.task("send") == "success" and len(sent_numbers(connections)) == 6

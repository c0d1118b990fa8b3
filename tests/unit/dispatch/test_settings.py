"""Send settings: one model reads what a task, a template or a connection gives, before anything is sent.

Unit tests of the model, then real Airflow task runs against the sandbox: words for yes/no settings
mean what they say, bad values fail the task naming the argument with no request sent, and values
computed by templates are used."""

from __future__ import annotations

import collections
import csv
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.dispatch.settings import SendSettings, send_settings
from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import control, deliveries, ihuyi_conn, raises, run_dag, set_conn

FLAGS = ("dry_run", "resend_ambiguous", "report_unmasked", "use_ledger", "check_balance")


def refusal(**given: Any) -> str:
    with raises(InvalidInputError) as info:
        send_settings(given)
    return str(info.value)


# -- the model ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["false", "FALSE", " False ", "no", "off", "0", 0, False])
@pytest.mark.parametrize("flag", FLAGS)
def test_false_words_are_false(flag: str, word: object) -> None:
    assert getattr(send_settings({flag: word}), flag) is False


@pytest.mark.parametrize("word", ["true", "TRUE", "yes", "On", "1", 1, True])
@pytest.mark.parametrize("flag", FLAGS)
def test_true_words_are_true(flag: str, word: object) -> None:
    assert getattr(send_settings({flag: word}), flag) is True


@pytest.mark.parametrize("value", ["maybe", "t", "n", "ture", 2, 1.0, [], "{{ flag }}"])
@pytest.mark.parametrize("flag", FLAGS)
def test_anything_else_is_not_a_flag(flag: str, value: object) -> None:
    assert f"{flag} must be true or false, got {value!r}" in refusal(**{flag: value})


@pytest.mark.parametrize("flag", FLAGS)
def test_none_is_not_a_flag_in_the_model(flag: str) -> None:
    with raises(ValueError, match="true or false"):
        SendSettings.model_validate({flag: None})


# name, low, high, whole number
BOUNDED = [
    ("concurrency", 1, 512, True),
    ("requests_per_second", 0.1, 100000, False),
    ("numbers_per_request", 1, 1000, True),
    ("max_attempts", 1, 20, True),
    ("progress_interval", 1, 86400, False),
    ("retention_days", 1, 36500, False),
    ("max_failed_ratio", 0, 1, False),
    ("max_rejected_ratio", 0, 1, False),
    ("max_consecutive_ambiguous", 0, 100000, True),
]


@pytest.mark.parametrize(("name", "low", "high", "whole"), BOUNDED, ids=[b[0] for b in BOUNDED])
def test_bounded_numbers(name: str, low: float, high: float, whole: bool) -> None:
    between = f"{name} must be between {low} and {high}"
    assert getattr(send_settings({name: low}), name) == low
    assert getattr(send_settings({name: str(high)}), name) == high  # as a template renders it
    assert f"{between}, got {low - 1}" in refusal(**{name: low - 1})
    assert f"{between}, got {high * 2}" in refusal(**{name: str(high * 2)})
    kind = "a whole number" if whole else "a number"
    for value in ("abc", True, False, [1]):
        assert f"{name} must be {kind}, got {value!r}" in refusal(**{name: value})
    if whole:
        assert f"{name} must be a whole number, got 2.5" in refusal(**{name: 2.5})
    else:
        assert f"{between}, got nan" in refusal(**{name: "nan"})


def test_several_bad_settings_give_one_message_each() -> None:
    message = refusal(max_failed_ratio=-0.5, progress_interval=0, resend_ambiguous="maybe")
    assert message.startswith("invalid send settings: ")
    assert "\n" not in message and "pydantic" not in message and "http" not in message
    clauses = message.removeprefix("invalid send settings: ").split("; ")
    assert sorted(clauses) == [
        "max_failed_ratio must be between 0 and 1, got -0.5",
        "progress_interval must be between 1 and 86400, got 0",
        "resend_ambiguous must be true or false, got 'maybe'",
    ]


def test_other_settings() -> None:
    assert "report_format must be 'csv' or 'jsonl', got 'xml'" in refusal(report_format="xml")
    assert "encoding must be a text encoding" in refusal(encoding="klingon")
    assert "concurency is not a setting" in refusal(concurency=4)
    assert send_settings({"encoding": "GB18030", "report_format": "jsonl"}).encoding == "gb18030"
    # A number quoted back is masked when it looks like a phone number.
    assert "got 138****8000" in refusal(concurrency="13812348000")


def test_none_and_blank_mean_not_given_and_defaults_are_declared_once() -> None:
    given = {name: None for name in SendSettings.model_fields} | {"concurrency": " ", "report_uri": ""}
    settings = send_settings(given)
    assert settings == SendSettings() and settings.model_fields_set == set()
    assert (settings.concurrency, settings.max_attempts, settings.progress_interval) == (16, 4, 10.0)
    assert (settings.use_ledger, settings.max_failed_ratio, settings.max_consecutive_ambiguous) == (
        True,
        0,
        10,
    )
    with raises(ValueError):
        SendSettings(concurrency=4).model_copy().__setattr__("concurrency", 5)  # frozen


def test_a_task_setting_overrides_the_connection_and_only_where_given() -> None:
    connection = send_settings({"concurrency": 8, "max_attempts": 2, "numbers_per_request": 50})
    task = send_settings({"concurrency": "32", "dry_run": "yes", "max_attempts": None})
    merged = task.over(connection)
    assert (merged.concurrency, merged.max_attempts, merged.numbers_per_request, merged.dry_run) == (
        32,
        2,
        50,
        True,
    )


# -- a connection's extras -----------------------------------------------------------------------------


def test_connection_extras_are_read_by_the_same_rules(
    connections: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    extras = {"concurrency": "lots", "max_attempts": 0, "requests_per_second": True, "verify_tls": "nope"}
    set_conn(monkeypatch, "ihuyi_odd", ihuyi_conn(connections.url, **extras))
    with raises(InvalidInputError) as info:
        IhuyiHook("ihuyi_odd").send_bulk(["13812348000"], "1001")
    message = str(info.value)
    assert message.startswith("connection 'ihuyi_odd': ")
    for clause in (
        "extra 'concurrency' must be a whole number, got 'lots'",
        "extra 'requests_per_second' must be a number, got True",
        "extra 'max_attempts' must be between 1 and 20, got 0",
    ):
        assert clause in message
    set_conn(monkeypatch, "ihuyi_odd", ihuyi_conn(connections.url, verify_tls="nope", timeout="0"))
    with raises(InvalidInputError) as info:
        IhuyiHook("ihuyi_odd").send_mms("13812348000", "1001")
    assert str(info.value) == (
        "connection 'ihuyi_odd': extra 'timeout' must be between 0.1 and 600, got 0; "
        "extra 'verify_tls' must be true or false, got 'nope'"
    )
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []


# -- through Airflow -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("airflow_db")
def test_false_written_as_a_word_neither_resends_nor_unmasks(
    connections: SandboxServer, tmp_path: Path
) -> None:
    """``resend_ambiguous="false"``: the gateway got every request but the connection dropped before
    the reply; neither a retry within the run nor a second run may text anyone again. And
    ``report_unmasked="false"`` writes masked numbers."""
    mobiles = [f"136{i:08d}" for i in range(20)]
    report = tmp_path / "report.csv"
    conf = {"mobiles": mobiles, "dedupe_key": "settings-words", "report_uri": str(report)}
    control(connections, "POST", "/_sandbox/faults", {"reset_rate": 1.0})
    first = run_dag("sms_test_settings_words", run_conf=conf)
    assert first.xcom("send", key="summary")["ambiguous"] == 20
    texted = collections.Counter(d["number"] for d in deliveries(connections, "ihuyi"))
    assert set(texted) == set(mobiles)
    assert [number for number, times in texted.items() if times > 1] == []  # no retry resent them
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    assert len(rows) == 20 and all("****" in row["phone"] for row in rows)
    assert not set(mobiles) & {row["phone"] for row in rows}

    control(connections, "POST", "/_sandbox/faults", {"reset_rate": 0.0})
    second = run_dag("sms_test_settings_words", run_conf=conf)
    assert second.xcom("send", key="summary")["accepted"] == 0
    assert len(deliveries(connections, "ihuyi")) == 20  # nor did a second run


@pytest.mark.usefixtures("airflow_db")
def test_bad_settings_fail_the_task_before_any_request(
    connections: SandboxServer, capfd: pytest.CaptureFixture[str]
) -> None:
    cases = [
        ({"max_failed_ratio": -0.5}, "max_failed_ratio must be between 0 and 1, got -0.5"),
        ({"max_failed_ratio": "abc"}, "max_failed_ratio must be a number, got 'abc'"),
        ({"progress_interval": 0}, "progress_interval must be between 1 and 86400, got 0"),
        ({"max_rejected_ratio": "0.1%"}, "max_rejected_ratio must be a number, got '0.1%'"),
        ({"check_balance": "maybe"}, "check_balance must be true or false, got 'maybe'"),
        ({"concurrency": 2.5}, "concurrency must be a whole number, got 2.5"),
        ({"pid": "abc"}, "pid must be a whole number, got 'abc'"),
    ]
    for conf, _ in cases:
        result = run_dag("sms_test_settings_from_conf", run_conf={"mobiles": ["13800000001"], **conf})
        assert result.task("send") == "failed", conf
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []
    log = "".join(capfd.readouterr())
    assert [words for _, words in cases if words not in log] == []


@pytest.mark.usefixtures("airflow_db")
def test_settings_computed_by_templates_are_used(connections: SandboxServer) -> None:
    result = run_dag("sms_test_settings_computed")
    assert result.task("send") == "success"
    summary = result.xcom("send")
    assert summary["accepted"] == 30 and summary["requests"] == 3  # 10 numbers per request
    assert len(deliveries(connections, "ihuyi")) == 30
    shown = result.rendered[("send", -1)]
    assert (shown["concurrency"], shown["numbers_per_request"], shown["max_attempts"]) == ("2", "10", "3")
    assert shown["lease_seconds"] == "30"


def test_the_connection_form_shows_the_bounds_the_hooks_check() -> None:
    """The form takes its bounds and defaults from the models' JSON schema: read here from the models'
    own field rules instead, they must be the same, with each gateway's numbers per request."""
    from airflow_provider_sms.dispatch.settings import ConnectionExtras
    from airflow_provider_sms.gateways import limits
    from airflow_provider_sms.get_provider_info import get_provider_info

    def model_schema(model: type[Any], name: str) -> dict[str, Any]:
        info = model.model_fields[name]
        schema: dict[str, Any] = {"type": "integer" if "int" in str(info.annotation) else "number"}
        for item in info.metadata:
            if hasattr(item, "ge"):
                schema["minimum"] = item.ge
            if hasattr(item, "le"):
                schema["maximum"] = item.le
        return schema | ({"default": info.default} if info.default is not None else {})

    per_request = {
        "ihuyi": limits.IHUYI_NUMBERS_PER_REQUEST,
        "juncdt": limits.JUNCDT_NUMBERS_PER_REQUEST,
    }
    for conn_type in get_provider_info()["connection-types"]:
        fields = conn_type["conn-fields"]
        shown = {
            name: {k: v for k, v in field["schema"].items() if k != "type"}
            | {"type": field["schema"]["type"][0]}
            for name, field in fields.items()
            if field["schema"]["type"][0] in ("integer", "number")
        }
        numeric = ("concurrency", "max_attempts", "max_per_number", "price_per_message")
        expected = {name: model_schema(SendSettings, name) for name in numeric}
        expected["requests_per_second"] = model_schema(SendSettings, "requests_per_second")
        expected["timeout"] = model_schema(ConnectionExtras, "timeout")
        default, most = per_request[conn_type["connection-type"]]
        expected["numbers_per_request"] = {
            "type": "integer",
            "minimum": 1,
            "maximum": most,
            "default": default,
        }
        assert most <= model_schema(SendSettings, "numbers_per_request")["maximum"]
        if "pid" in fields:
            expected["pid"] = model_schema(ConnectionExtras, "pid")
        assert shown == expected


def test_what_the_form_allows_the_hooks_take_and_what_it_refuses_they_refuse(
    connections: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At each bound of each number in the ihuyi form the hook builds its client; just past it the hook
    refuses the connection, naming the extra."""
    from airflow_provider_sms.get_provider_info import get_provider_info

    form = get_provider_info()["connection-types"][0]["conn-fields"]
    for name, field in form.items():
        schema = field["schema"]
        for bound, past in (("minimum", -1), ("maximum", +1)):
            if bound not in schema:
                continue
            set_conn(monkeypatch, "ihuyi_default", ihuyi_conn(connections.url, **{name: schema[bound]}))
            assert IhuyiHook().get_conn() is not None, (name, bound)
            beyond = schema[bound] + past
            set_conn(monkeypatch, "ihuyi_default", ihuyi_conn(connections.url, **{name: beyond}))
            with raises(InvalidInputError, match=f"extra '{name}'"):
                IhuyiHook().get_conn()

"""Audiences as data engineers export them: other encodings, numbers written as floats, params that
are not text, JSON arrays, empty cells, absurdly long lines. Real files, sent through the hooks to
the sandbox; each row must end with the outcome a user would expect, and nothing else goes out."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.dispatch.engine import CHUNK
from airflow_provider_sms.dispatch.outcomes import Summary
from airflow_provider_sms.dispatch.recipients import MAX_ROW_CHARS
from airflow_provider_sms.dispatch.settings import SendSettings, send_settings
from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.hooks.juncdt import JuncdtHook
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import ROOT, control, deliveries, raises


def numbers(n: int, start: int = 0) -> list[str]:
    return [f"139{start + i:08d}" for i in range(n)]


def notice(source: Any, *, encoding: str = "utf-8", **params: Any) -> Summary:
    """TPL_NOTICE (``${name}您好，您的订单${order}已发货``), 500 numbers a request when params agree."""
    settings = send_settings({"numbers_per_request": 500, "encoding": encoding})  # as an operator does
    return JuncdtHook().send_bulk(source, "TPL_NOTICE", params or None, bulk=settings)


def delivered(server: SandboxServer) -> dict[str, dict[str, str] | None]:
    return {d["number"]: d.get("params") for d in deliveries(server, "juncdt")}


def report_rows(path: Path) -> dict[int, dict[str, Any]]:
    return {row["row"]: row for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


# ----- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "bad_from"), [(30, 21), (CHUNK + 100, CHUNK + 50)])
def test_gbk_bytes_from_a_row_on_stop_the_campaign_at_that_row(
    connections: SandboxServer, tmp_path: Path, rows: int, bad_from: int
) -> None:
    # UTF-8 (with a BOM) up to data row bad_from - 1, then GBK (appended to by another export).
    audience = numbers(rows)
    source = tmp_path / "customers.csv"
    with source.open("wb") as out:
        out.write(b"\xef\xbb\xbfphone,name,order\n")
        for row, number in enumerate(audience, start=1):
            out.write(f"{number},王先生,A1\n".encode("gbk" if row >= bad_from else "utf-8"))
    report = tmp_path / "report.jsonl"
    summary = JuncdtHook().send_bulk(
        str(source), "TPL_NOTICE", bulk=SendSettings(numbers_per_request=500, report_uri=str(report))
    )
    before = audience[: bad_from - 1]
    got = delivered(connections)
    assert sorted(got) == before  # every row before the bad one went out, nothing after it
    assert all(params == {"name": "王先生", "order": "A1"} for params in got.values())
    assert summary.counts["accepted"] == bad_from - 1
    assert summary.counts["not_sent"] == rows - bad_from + 1
    assert summary.total == rows and summary.counts["rejected"] == 0
    assert summary.stopped is not None
    assert "customers.csv" in summary.stopped
    assert f"row {bad_from} (line {bad_from + 1})" in summary.stopped
    assert 'encoding="gb18030"' in summary.stopped
    outcomes = report_rows(report)
    assert len(outcomes) == rows
    assert {outcomes[i]["outcome"] for i in range(bad_from - 1)} == {"accepted"}
    assert {outcomes[i]["outcome"] for i in range(bad_from - 1, rows)} == {"not_sent"}


@pytest.mark.parametrize(("suffix", "where"), [(".jsonl", "line 3"), (".json", "element 3")])
def test_gbk_bytes_in_json_stop_at_their_row(
    connections: SandboxServer, tmp_path: Path, suffix: str, where: str
) -> None:
    rows = [{"phone": n, "params": {"code": "王"}} for n in numbers(5)]
    texts = [json.dumps(row, ensure_ascii=False) for row in rows]
    parts = [t.encode("gbk" if i >= 2 else "utf-8") for i, t in enumerate(texts)]
    source = tmp_path / f"audience{suffix}"
    source.write_bytes(b"\n".join(parts) + b"\n" if suffix == ".jsonl" else b"[" + b",".join(parts) + b"]")
    summary = JuncdtHook().send_bulk(str(source), "TPL_CODE")
    assert sorted(delivered(connections)) == numbers(2)
    assert summary.counts["accepted"] == 2 and summary.counts["not_sent"] == 3
    assert summary.stopped is not None and f"{where} is not valid utf-8" in summary.stopped


def test_a_gbk_export_is_read_with_encoding_gb18030(connections: SandboxServer, tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    lines = ["phone,name,order", "13900000001,王先生,甲1", "13900000002,李女士,乙2"]
    source.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))
    summary = notice(str(source), encoding="gb18030")
    assert summary.counts["accepted"] == 2 and summary.stopped is None
    assert delivered(connections) == {
        "13900000001": {"name": "王先生", "order": "甲1"},
        "13900000002": {"name": "李女士", "order": "乙2"},
    }


def test_an_unknown_encoding_is_refused_before_sending(connections: SandboxServer, tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    source.write_text("phone,name,order\n13900000001,a,1\n", encoding="utf-8")
    with raises(InvalidInputError, match=r"encoding must be a text encoding Python knows.*'gbk2312'"):
        notice(str(source), encoding="gbk2312")
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []


# ----- numbers written as floats -------------------------------------------------------------------


def test_a_number_exported_as_a_float_is_read_as_it_was_typed(
    connections: SandboxServer, tmp_path: Path
) -> None:
    # "1380013800.0": a 10-digit typo; read with "." as a separator it was 13800138000, a stranger.
    source = tmp_path / "export.csv"
    source.write_text(
        "phone,name,order\n1380013800.0,a,1\n13900139000.0,b,2\n8613700137000.0,c,3\n", encoding="utf-8"
    )
    summary = notice(str(source))
    got = delivered(connections)
    assert "13800138000" not in got
    assert sorted(got) == ["13700137000", "13900139000"]
    assert summary.counts["accepted"] == 2 and summary.counts["rejected"] == 1
    assert "rejected: invalid_input 10 digits, a mainland mobile number has 11" in summary.reasons


def test_separators_never_join_fragments_into_a_number(connections: SandboxServer) -> None:
    rows = ["1380013800 0", "138001 38000", "138.0013.8000", "+86 139-0013-9000", "(0086)13700137000"]
    summary = JuncdtHook().send_bulk(rows, "TPL_CODE", {"code": "1"})
    assert sorted(delivered(connections)) == ["13700137000", "13900139000"]
    assert summary.counts["rejected"] == 3


# ----- param values --------------------------------------------------------------------------------


def test_params_that_are_not_text_or_numbers_are_rejected_per_row(connections: SandboxServer) -> None:
    bad: list[Any] = [None, {"id": 7}, [1, 2], True, "", float("nan")]
    good: list[Any] = ["4821", 4822, 48.5]
    rows = [
        {"phone": n, "params": {"code": v}}
        for n, v in zip(numbers(len(bad) + len(good)), bad + good, strict=True)
    ]
    summary = JuncdtHook().send_bulk(rows, "TPL_CODE")
    got = delivered(connections)
    assert got == {n: {"code": str(v)} for n, v in zip(numbers(9)[len(bad) :], good, strict=True)}
    assert summary.counts["rejected"] == len(bad) and summary.counts["accepted"] == len(good)
    reasons = " ".join(summary.reasons)
    assert "param 'code' is empty" in reasons
    assert "param 'code' must be text or a number, not dict" in reasons
    assert "not list" in reasons and "not bool" in reasons
    assert "7" not in reasons  # the reason names the param, never its value


def test_a_shared_param_that_is_not_text_is_refused_before_sending(connections: SandboxServer) -> None:
    with raises(InvalidInputError, match="param 'code' is empty"):
        JuncdtHook().send_bulk(["13900000001"], "TPL_CODE", {"code": None})
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []


def test_an_empty_cell_in_the_first_row_rejects_that_row_only(
    connections: SandboxServer, tmp_path: Path
) -> None:
    source = tmp_path / "customers.csv"
    source.write_text(
        "phone,name,order\n13900000001,,A1\n13900000002,李,A2\n13900000003,王,\n13900000004,赵,A4\n",
        encoding="utf-8",
    )
    summary = notice(str(source))
    assert sorted(delivered(connections)) == ["13900000002", "13900000004"]
    assert summary.counts["rejected"] == 2 and summary.stopped is None
    assert summary.reasons == {
        "rejected: invalid_input param 'name' is empty": 1,
        "rejected: invalid_input param 'order' is empty": 1,
    }


def test_a_csv_row_with_more_or_fewer_cells_than_the_header_is_rejected(
    connections: SandboxServer, tmp_path: Path
) -> None:
    source = tmp_path / "customers.csv"
    source.write_text(
        "phone,name,order\n13900000001,李,A1,x\n13900000002,王\n13900000003,赵,A3\n", encoding="utf-8"
    )
    summary = notice(str(source))
    assert sorted(delivered(connections)) == ["13900000003"]
    reasons = " ".join(summary.reasons)
    assert "row 1 (line 2) has 4 cells, the header 3" in reasons
    assert "row 2 (line 3) has 2 cells, the header 3" in reasons


# ----- JSON ----------------------------------------------------------------------------------------


def test_a_json_array_is_read_as_an_array(connections: SandboxServer, tmp_path: Path) -> None:
    source = tmp_path / "audience.json"
    items = [
        {"phone": "13900000001", "params": {"name": "李", "order": "A1"}},
        {"phone": "13900000002", "name": "王", "order": "A2"},
        13900000003,
        "13900000004",
    ]
    source.write_text(json.dumps(items, ensure_ascii=False, indent=2), encoding="utf-8")
    summary = notice(str(source), name="客户", order="A0")
    assert summary.counts["accepted"] == 4
    assert delivered(connections) == {
        "13900000001": {"name": "李", "order": "A1"},
        "13900000002": {"name": "王", "order": "A2"},
        "13900000003": {"name": "客户", "order": "A0"},
        "13900000004": {"name": "客户", "order": "A0"},
    }
    # A .json file holding JSON Lines is still read as such.
    lines = tmp_path / "more.json"
    lines.write_text('{"phone": "13900000005"}\n"13900000006"\n', encoding="utf-8")
    assert notice(str(lines), name="客户", order="A0").counts["accepted"] == 2


def test_a_json_array_of_numbers_for_mms(connections: SandboxServer, tmp_path: Path) -> None:
    source = tmp_path / "audience.json"
    source.write_text(json.dumps(numbers(250)), encoding="utf-8")
    summary = IhuyiHook().send_bulk(str(source), "1001", bulk=SendSettings(numbers_per_request=100))
    assert summary.counts["accepted"] == 250
    assert sorted(d["number"] for d in deliveries(connections, "ihuyi")) == numbers(250)


@pytest.mark.parametrize(
    "text",
    ['{\n  "recipients": ["13900000001"]\n}\n', "<xml/>\n"],
    ids=["an object", "not JSON"],
)
def test_a_json_file_that_is_neither_is_refused_before_sending(
    connections: SandboxServer, tmp_path: Path, text: str
) -> None:
    source = tmp_path / "audience.json"
    source.write_text(text, encoding="utf-8")
    with raises(InvalidInputError, match=r"audience\.json.*JSON array"):
        JuncdtHook().send_bulk(str(source), "TPL_CODE", {"code": "1"})
    assert control(connections, "GET", "/_sandbox/requests")["requests"] == []


def test_a_json_array_element_that_is_not_json_or_too_long_is_rejected(
    connections: SandboxServer, tmp_path: Path
) -> None:
    source = tmp_path / "audience.json"
    long = json.dumps({"phone": "13900000002", "note": "x" * (MAX_ROW_CHARS + 10)})
    source.write_text(
        f'["13900000001", {long}, {{"phone": 13900000003,}}, ["[", "{{"], "13900000004"]', encoding="utf-8"
    )
    summary = JuncdtHook().send_bulk(str(source), "TPL_CODE", {"code": "1"})
    assert sorted(delivered(connections)) == ["13900000001", "13900000004"]
    reasons = " ".join(summary.reasons)
    assert f"element 2 is longer than {MAX_ROW_CHARS:,} characters" in reasons
    assert "element 3 is not JSON" in reasons
    assert summary.counts["rejected"] == 3 and summary.total == 5


# ----- long lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_huge_line_is_rejected_and_the_rest_is_sent(
    connections: SandboxServer, tmp_path: Path, suffix: str
) -> None:
    source = tmp_path / f"customers{suffix}"
    huge = "x" * 20_000_000
    if suffix == ".csv":
        text = f"phone,code\n13900000001,1\n13900000002,{huge}\n13900000003,3\n"
    else:
        text = (
            '{"phone": "13900000001", "params": {"code": "1"}}\n'
            f'{{"phone": "13900000002", "params": {{"code": "{huge}"}}}}\n'
            '{"phone": "13900000003", "params": {"code": "3"}}\n'
        )
    source.write_text(text, encoding="utf-8")
    del text, huge
    tracemalloc.start()
    try:
        summary = JuncdtHook().send_bulk(str(source), "TPL_CODE")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000  # the 20 MB line was never held whole
    assert delivered(connections) == {"13900000001": {"code": "1"}, "13900000003": {"code": "3"}}
    where = "row 2 (line 3)" if suffix == ".csv" else "line 2"
    assert summary.reasons == {
        f"rejected: invalid_input {where} is longer than {MAX_ROW_CHARS:,} characters": 1
    }


def test_an_unclosed_quote_does_not_swallow_the_file(connections: SandboxServer, tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    filler = "".join(f"139{i:08d},5\n" for i in range(10, 20_000))  # past csv's field limit
    source.write_text(f'phone,code\n13900000001,"1\n{filler}13800000001,5\n', encoding="utf-8")
    summary = JuncdtHook().send_bulk(str(source), "TPL_CODE", bulk=SendSettings(numbers_per_request=500))
    assert "rejected: invalid_input row 1 (line 2) is not valid CSV" in " ".join(summary.reasons)
    assert "13800000001" in delivered(connections)  # reading went on after the bad row


def test_the_package_says_where_its_documentation_is() -> None:
    """Airflow's Providers page links the package to ``[project.urls] Documentation``; every URL shares one
    base, and the documentation it names is a file of this repository."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog"}
    base = urls["Homepage"]
    assert all(url.startswith(base) for url in urls.values())
    assert (ROOT / urls["Documentation"].removeprefix(base + "/blob/main/")).is_file()

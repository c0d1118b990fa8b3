"""Runs last: no secret and no unmasked phone number in anything the suite's code produced.

Scans every log line and printed output the whole suite captured (Airflow task logs included),
every failure text, every exception a test expected, and every XCom in the test metadata database.
Run alone or with a subset of the suite it skips: it judges what the whole suite produced.
"""

from __future__ import annotations

import json
import re

import pytest

from airflow_provider_sms.protocol.phones import mask
from tests.conftest import CAPTURED, RAN, SECRETS

# A mainland mobile number, with or without +86/0086/86, standing on its own: not inside a longer run
# of letters and digits (hex ids: about 6 in 10,000 random UUIDs hold 1[3-9] and 9 digits between
# two hex letters), not the digits of a decimal fraction, and not a masked one (138****8000).
MOBILE = re.compile(r"(?<![0-9A-Za-z*])(?<!\d\.)(?:\+86|0086|86)?1[3-9]\d{9}(?![0-9A-Za-z])")


@pytest.fixture
def _whole_suite() -> None:
    for module in ("tests/test_operators.py", "tests/test_bad_input.py"):
        if not any(node.startswith(module) for node in RAN):
            pytest.skip(f"the leak scan judges a whole-suite run ({module} did not run)")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("to 13800138000", True),
        ("mobile=+8613800138000", True),
        ("号码8613800138000，", True),
        ("['0086 13800138000']", True),
        ("['13800138000']", True),
        ("138****8000", False),
        ("ti_id=01a20937-4ad8-7dfc-b0b7-a13812345678", False),
        ("send id 1795451048006006377", False),
        ("took 0.13912345678 s", False),
    ],
)
def test_the_scan_finds_numbers_and_not_ids(text: str, found: bool) -> None:
    assert bool(MOBILE.search(text)) is found


@pytest.mark.usefixtures("_whole_suite")
def test_no_secret_and_no_unmasked_number_in_logs_or_exceptions() -> None:
    assert len(CAPTURED) > 10, "the scan saw too little: is the capture hook installed?"
    assert any(section == "exception" for _, section, _ in CAPTURED), "no exception text recorded"
    leaks = [(node, section) for node, section, text in CAPTURED for secret in SECRETS if secret in text]
    assert leaks == []
    numbers = [
        f"{node} [{section}]: ...{text[max(0, hit.start() - 160) : hit.end() + 40]}..."
        for node, section, text in CAPTURED
        if (hit := MOBILE.search(text))
    ]
    assert numbers == [], "unmasked numbers:\n" + "\n".join(numbers)


@pytest.mark.usefixtures("_whole_suite")
def test_no_secret_in_any_xcom_and_no_number_in_our_summaries() -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = [
            (r.dag_id, r.task_id, r.key, json.dumps(r.value, ensure_ascii=False, default=str))
            for r in session.query(XComModel).all()
        ]
    assert rows, "no XCom to scan: did the DAG tests run?"
    assert [row[:3] for row in rows if any(secret in row[3] for secret in SECRETS)] == []
    summaries = [row for row in rows if '"gateway":' in row[3]]
    assert summaries
    assert [row[:3] for row in summaries if MOBILE.search(row[3])] == []


@pytest.mark.usefixtures("_whole_suite")
def test_no_secret_and_no_number_in_any_rendered_template_field() -> None:
    # What the Rendered Template view shows and the metadata database keeps of every task the suite
    # ran: the send operators' audiences appear as a count and masked numbers, never the numbers.
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = [
            (r.dag_id, r.task_id, r.map_index, json.dumps(r.rendered_fields, ensure_ascii=False))
            for r in session.query(RenderedTaskInstanceFields).all()
        ]
    audiences = [row for row in rows if '"first (masked)"' in row[3]]
    assert audiences, "no send operator's rendered fields to scan: did the DAG tests run?"
    assert [row[:3] for row in rows if any(secret in row[3] for secret in SECRETS)] == []
    assert [(*row[:3], mask(hit.group())) for row in rows if (hit := MOBILE.search(row[3]))] == []

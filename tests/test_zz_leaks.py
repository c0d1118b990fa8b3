"""Runs last: no secret and no unmasked phone number in anything the suite's code produced.

Scans every log line and printed output the tests captured (Airflow task logs included), every
failure text, every exception a test expected, and every XCom and rendered field in the test metadata
database. Run alone or with any subset of the suite, it still has something to judge: its first test
runs a campaign through Airflow whose gateway echoes a number and the request's secrets back.
"""

from __future__ import annotations

import json
import re

import pytest

from airflow_provider_sms.errors import FatalGatewayError
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.protocol.phones import mask
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.conftest import (
    CAPTURED,
    IHUYI_PASSWORD,
    JUNCDT_ACCESS_SECRET,
    JUNCDT_PACKAGE_CODE,
    RAN,
    SECRETS,
    force,
    run_dag,
)

# A mainland mobile number, with or without +86/0086/86, standing on its own: not inside a longer run
# of letters and digits (hex ids: about 6 in 10,000 random UUIDs hold 1[3-9] and 9 digits between
# two hex letters), not the digits of a decimal fraction, and not a masked one (138****8000).
MOBILE = re.compile(r"(?<![0-9A-Za-z*])(?<!\d\.)(?:\+86|0086|86)?1[3-9]\d{9}(?![0-9A-Za-z])")
HERE = "tests/test_zz_leaks.py"
ECHOED = "13800000120"  # what the gateway says back: a number of the request, masked 138****0120
PRODUCER = f"{HERE}::test_a_gateway_that_echoes_numbers_and_secrets"


@pytest.mark.usefixtures("airflow_db")
def test_a_gateway_that_echoes_numbers_and_secrets(connections: SandboxServer) -> None:
    """Material for the scans below, whatever else ran: a task log, a summary XCom, rendered fields and
    an exception, all carrying what a gateway said back."""
    said = f"可用次数不足 {ECHOED} as={JUNCDT_ACCESS_SECRET} pkg={JUNCDT_PACKAGE_CODE}"
    force(connections, "juncdt", "sendMessage", "30019", msg=said)
    result = run_dag("sms_test_sms", run_conf={"recipients": [ECHOED, "13900000121"]})
    assert result.task("send") == "failed"
    assert "138****0120" in json.dumps(result.xcom("send", key="summary"), ensure_ascii=False)
    force(connections, "ihuyi", "SendMms", "4051", msg=f"剩余条数不足 {ECHOED} {IHUYI_PASSWORD}")
    with pytest.raises(FatalGatewayError, match=r"138\*\*\*\*0120 \*\*\*"):
        IhuyiHook().send_mms(ECHOED, "1001")


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


def test_no_secret_and_no_unmasked_number_in_logs_or_exceptions() -> None:
    producer = [(section, text) for node, section, text in CAPTURED if node == PRODUCER]
    # The capture works and saw the gateway's words: in the task log and in the expected exception.
    assert any("Stopping the campaign" in text and "138****0120" in text for _, text in producer)
    assert any(section == "exception" and "138****0120 ***" in text for section, text in producer)
    dag_tests = {node for node in RAN if node.startswith("tests/unit/operators/test_operators.py")}
    if dag_tests:  # they run Airflow tasks, which always log: the scan must see those logs too
        assert any(node in dag_tests for node, _, _ in CAPTURED), "nothing captured of the DAG tests"
    leaks = [(node, section) for node, section, text in CAPTURED for secret in SECRETS if secret in text]
    assert leaks == []
    numbers = [
        f"{node} [{section}]: ...{text[max(0, hit.start() - 160) : hit.end() + 40]}..."
        for node, section, text in CAPTURED
        if (hit := MOBILE.search(text))
    ]
    assert numbers == [], "unmasked numbers:\n" + "\n".join(numbers)


@pytest.mark.usefixtures("airflow_db")
def test_no_secret_in_any_xcom_and_no_number_in_our_summaries() -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = [
            (r.dag_id, r.task_id, r.key, json.dumps(r.value, ensure_ascii=False, default=str))
            for r in session.query(XComModel).all()
        ]
    assert any(row[0] == "sms_test_sms" for row in rows), "the summary of the first test is missing"
    assert [row[:3] for row in rows if any(secret in row[3] for secret in SECRETS)] == []
    summaries = [row for row in rows if '"gateway":' in row[3]]
    assert summaries
    assert [row[:3] for row in summaries if MOBILE.search(row[3])] == []


@pytest.mark.usefixtures("airflow_db")
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
    assert any(row[0] == "sms_test_sms" for row in audiences), "the first test's task is missing"
    assert [row[:3] for row in rows if any(secret in row[3] for secret in SECRETS)] == []
    assert [(*row[:3], mask(hit.group())) for row in rows if (hit := MOBILE.search(row[3]))] == []

"""The leak scan (``tests/leak_scan.py``, a plugin that judges the whole run when it ends): what it
is given to see in every run, what it takes for a number, and proof that a leak fails the run."""

from __future__ import annotations

import json
import os

import pytest

from airflow_provider_sms.errors import FatalGatewayError
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.sandbox.accounts import IHUYI_PASSWORD, JUNCDT_ACCESS_SECRET, JUNCDT_PACKAGE_CODE
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import ROOT, force, raises, run_dag
from tests.leak_scan import MOBILE

ECHOED = "13800000120"  # what the gateway says back: a number of the request, masked 138****0120


@pytest.mark.usefixtures("airflow_db")
def test_a_gateway_that_echoes_numbers_and_secrets(connections: SandboxServer) -> None:
    """Material for the scan, whatever else runs: a task log, a summary XCom, rendered fields and an
    exception, all carrying what a gateway said back. The scan checks it saw them."""
    said = f"可用次数不足 {ECHOED} as={JUNCDT_ACCESS_SECRET} pkg={JUNCDT_PACKAGE_CODE}"
    force(connections, "juncdt", "sendMessage", "30019", msg=said)
    result = run_dag("sms_test_sms", run_conf={"recipients": [ECHOED, "13900000121"]})
    assert result.task("send") == "failed"
    assert "138****0120" in json.dumps(result.xcom("send", key="summary"), ensure_ascii=False)
    force(connections, "ihuyi", "SendMms", "4051", msg=f"剩余条数不足 {ECHOED} {IHUYI_PASSWORD}")
    with raises(FatalGatewayError, match=r"138\*\*\*\*0120 \*\*\*"):
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


PLANTED = """
import logging

from tests.helpers import raises


def test_logs_a_masked_number():
    logging.getLogger("sms").warning("sent to 138****8000")


def test_{name}():
    {body}
"""
LEAKS = {
    "logs_a_number": 'logging.getLogger("sms").warning("sent to 13800138000")',
    "prints_a_secret": f'print("password={IHUYI_PASSWORD}")',
    "expects_an_error_that_carries_a_secret": (
        f'with raises(ValueError):\n        raise ValueError("key {JUNCDT_PACKAGE_CODE} refused")'
    ),
}


@pytest.mark.parametrize("name", [*LEAKS, "is_clean"])
def test_a_leak_fails_the_run_and_a_clean_run_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A run of passing tests, one of which leaks, fails at its end, naming that test; without the
    leak the same run passes."""
    body = LEAKS.get(name, "pass")
    pytester.makepyfile(test_planted=PLANTED.replace("{name}", name).replace("{body}", body))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("-p", "tests.leak_scan", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    output = result.stdout.str()
    if name == "is_clean":
        assert result.ret == pytest.ExitCode.OK
        assert "no secret, no unmasked number" in output
    else:
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        assert f"test_planted.py::test_{name}" in output and "leak scan" in output
    for secret in (IHUYI_PASSWORD, JUNCDT_PACKAGE_CODE):
        assert secret not in output.replace(f"test_{name}", "")  # the report names, never quotes it

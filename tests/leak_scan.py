"""A pytest plugin: when the run ends, no secret and no unmasked phone number in anything it produced.

It keeps every log line and printed output the tests captured (Airflow task logs included), every
failure text, and the text of every exception a test expected with :func:`tests.helpers.raises`. At
the end of the run it scans them, and, when a test used the metadata database, every XCom and rendered
template field in it, and fails the run on a finding, naming the test and where. ``tests/conftest.py``
registers it; ``pytest -p tests.leak_scan`` does too.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING

import pytest

from airflow_provider_sms.protocol.phones import mask
from airflow_provider_sms.sandbox.accounts import IHUYI_PASSWORD, JUNCDT_ACCESS_SECRET, JUNCDT_PACKAGE_CODE

if TYPE_CHECKING:
    from _pytest.terminal import TerminalReporter

SECRETS = (IHUYI_PASSWORD, JUNCDT_ACCESS_SECRET, JUNCDT_PACKAGE_CODE)
# A mainland mobile number, with or without +86/0086/86, standing on its own: not inside a longer run
# of letters and digits (hex ids: about 6 in 10,000 random UUIDs hold 1[3-9] and 9 digits between
# two hex letters), not the digits of a decimal fraction, and not a masked one (138****8000).
MOBILE = re.compile(r"(?<![0-9A-Za-z*])(?<!\d\.)(?:\+86|0086|86)?1[3-9]\d{9}(?![0-9A-Za-z])")
# Tests whose captured material must reach the scan when they ran: its proof that it is not blind.
PRODUCER = "test_a_gateway_that_echoes_numbers_and_secrets"
DAG_TESTS = "tests/unit/operators/test_operators.py"

# (test, section, text) of everything seen; tests.helpers.raises adds the exceptions tests expected.
CAPTURED: list[tuple[str, str, str]] = []


def current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]


def exception_texts(error: BaseException | None) -> str:
    """The type and message of an exception and of everything chained to it (what a user would see)."""
    texts: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts.append(f"{type(error).__name__}: {error}")
        # As a traceback shows it: the cause, else the context unless ``raise ... from None`` hid it.
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return "\n".join(texts)


def findings(captured: list[tuple[str, str, str]]) -> list[str]:
    """Each secret and unmasked number in ``captured``, with a little context (the number masked)."""
    found = [
        f"{node} [{section}]: a secret" for node, section, text in captured for s in SECRETS if s in text
    ]
    for node, section, text in captured:
        if hit := MOBILE.search(text):
            before, after = text[max(0, hit.start() - 120) : hit.start()], text[hit.end() : hit.end() + 40]
            found.append(f"{node} [{section}]: unmasked number ...{before}{mask(hit.group())}{after}...")
    return found


def database_findings(producer_ran: bool) -> list[str]:
    """Secrets in any XCom or rendered field, numbers in our summaries or any rendered field; and, when
    the producer ran, proof that its run's XCom and rendered fields were read."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rtif
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = [
            (f"xcom {r.dag_id}.{r.task_id}[{r.key}]", json.dumps(r.value, ensure_ascii=False, default=str))
            for r in session.query(XComModel).all()
        ]
        rendered = [
            (
                f"rendered {r.dag_id}.{r.task_id}[{r.map_index}]",
                json.dumps(r.rendered_fields, ensure_ascii=False),
            )
            for r in session.query(Rtif).all()
        ]
    found = [f"{where}: a secret" for where, text in xcoms + rendered for s in SECRETS if s in text]
    summaries = [(where, text) for where, text in xcoms if '"gateway":' in text]
    found += [f"{where}: unmasked number" for where, text in summaries + rendered if MOBILE.search(text)]
    for kind, rows in (("xcom", summaries), ("rendered", rendered)):
        if producer_ran and not any(where.startswith(f"{kind} sms_test_sms.") for where, _ in rows):
            found.append(f"leak scan blind: no {kind} of {PRODUCER}'s DAG run in the database")
    return found


class LeakScan:
    def __init__(self) -> None:
        self.ran: set[str] = set()
        self.used_database = False
        self.found: list[str] = []

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if "airflow_db" in getattr(item, "fixturenames", ()):
            self.used_database = True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.ran.add(report.nodeid)
        for section, content in report.sections:
            if report.when == "call" or section.endswith(report.when):  # each phase repeats the earlier ones
                CAPTURED.append((report.nodeid, section, content))
        if report.longrepr is not None:
            CAPTURED.append((report.nodeid, "exception", str(report.longrepr)))

    def blind_spots(self) -> list[str]:
        """What the scan should have seen of the tests that ran, and did not."""
        missing = []
        producer = [(section, text) for node, section, text in CAPTURED if node.endswith("::" + PRODUCER)]
        if any(node.endswith("::" + PRODUCER) for node in self.ran):
            if not any("138****0120" in text for section, text in producer if section != "exception"):
                missing.append(f"{PRODUCER}: its task log was not captured")
            if not any(section == "exception" and "138****0120 ***" in text for section, text in producer):
                missing.append(f"{PRODUCER}: the exception it expected was not recorded")
        dag_tests = {node for node in self.ran if node.startswith(DAG_TESTS)}
        if dag_tests and not any(node in dag_tests for node, _, _ in CAPTURED):
            missing.append(f"{DAG_TESTS}: nothing captured of its Airflow task runs")
        return missing

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.found = findings(CAPTURED) + [f"leak scan blind: {gap}" for gap in self.blind_spots()]
        if self.used_database:
            self.found += database_findings(any(node.endswith("::" + PRODUCER) for node in self.ran))
        if self.found and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: TerminalReporter) -> None:
        if self.found:
            terminalreporter.write_sep("=", "leak scan: secrets or unmasked numbers", red=True, bold=True)
            for line in self.found:
                terminalreporter.write_line(line)
        else:
            terminalreporter.write_line(
                f"leak scan: {len(CAPTURED)} captured texts, no secret, no unmasked number"
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LeakScan(), "leak-scan")

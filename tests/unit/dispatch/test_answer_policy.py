"""What each class of gateway answer does to a campaign, end to end: a hook's ``send_bulk`` against the
sandbox over loopback. One request at a time, two numbers per request, the first request's answer
forced: what a user sees in the summary and on the phones."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import pytest

from airflow_provider_sms.dispatch.outcomes import Summary
from airflow_provider_sms.dispatch.settings import SendSettings
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.hooks.juncdt import JuncdtHook
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import control, deliveries, force

AUDIENCE = [f"1380013{i:04d}" for i in range(6)]
ONE_AT_A_TIME = SendSettings(concurrency=1, numbers_per_request=2)
METHOD = {"ihuyi": "SendMms", "juncdt": "sendMessage"}


def send(gateway: str, audience: list[Any], settings: SendSettings = ONE_AT_A_TIME, **kwargs: Any) -> Summary:
    if gateway == "ihuyi":
        return IhuyiHook().send_bulk(audience, "1001", bulk=settings, **kwargs)
    params = kwargs.pop("params", {"code": "1"})
    template = kwargs.pop("template", "TPL_CODE")
    return JuncdtHook().send_bulk(audience, template, params, bulk=settings, **kwargs)


def sent_requests(server: SandboxServer, gateway: str) -> list[dict[str, Any]]:
    log = control(server, "GET", f"/_sandbox/requests?gateway={gateway}")["requests"]
    return [r for r in log if r["method"] == METHOD[gateway]]


def counts(summary: Summary) -> dict[str, int]:
    return {outcome: n for outcome, n in summary.counts.items() if n}


@pytest.mark.parametrize(
    ("gateway", "code"),
    [("ihuyi", "0"), ("juncdt", "10001"), ("juncdt", "30009")],
)
def test_a_transient_answer_is_retried_and_the_message_goes_out(
    connections: SandboxServer, gateway: str, code: str
) -> None:
    force(connections, gateway, METHOD[gateway], code)
    summary = send(gateway, AUDIENCE)
    assert counts(summary) == {"accepted": 6}
    assert len(sent_requests(connections, gateway)) == 4  # the first batch twice
    assert sorted(d["number"] for d in deliveries(connections, gateway)) == AUDIENCE


@pytest.mark.parametrize(
    ("gateway", "code"),
    [("ihuyi", "4051"), ("ihuyi", "405"), ("juncdt", "30019"), ("juncdt", "30006")],
)
def test_a_fatal_answer_stops_the_campaign(connections: SandboxServer, gateway: str, code: str) -> None:
    force(connections, gateway, METHOD[gateway], code)
    summary = send(gateway, AUDIENCE)
    assert counts(summary) == {"failed": 2, "not_sent": 4}
    assert summary.stopped is not None and f"code {code}" in summary.stopped
    assert len(sent_requests(connections, gateway)) == 1  # no retry, and nothing after it
    assert deliveries(connections) == []


@pytest.mark.parametrize(
    ("gateway", "code"),
    [("ihuyi", "409"), ("ihuyi", "403"), ("juncdt", "30011"), ("juncdt", "30028")],
)
def test_bad_input_is_rejected_and_the_campaign_goes_on(
    connections: SandboxServer, gateway: str, code: str
) -> None:
    # The first request (two numbers) and each of its halves are refused: a refused request of several
    # numbers is sent again in halves, so that only the numbers refused on their own end rejected.
    force(connections, gateway, METHOD[gateway], code, times=3)
    summary = send(gateway, AUDIENCE)
    assert counts(summary) == {"rejected": 2, "accepted": 4}
    assert summary.stopped is None
    assert len(sent_requests(connections, gateway)) == 3 + 2  # not retried, only split
    assert sorted(d["number"] for d in deliveries(connections, gateway)) == AUDIENCE[2:]


@pytest.mark.parametrize(("gateway", "code"), [("ihuyi", "4099"), ("juncdt", "39999")])
def test_an_unknown_answer_fails_that_batch_without_a_retry(
    connections: SandboxServer, gateway: str, code: str
) -> None:
    force(connections, gateway, METHOD[gateway], code, msg="新规则")
    summary = send(gateway, AUDIENCE)
    assert counts(summary) == {"failed": 2, "accepted": 4}
    assert summary.stopped is None
    assert summary.reasons == {f"failed: {code} 新规则": 2}  # verbatim
    assert len(sent_requests(connections, gateway)) == 3
    assert sorted(d["number"] for d in deliveries(connections, gateway)) == AUDIENCE[2:]


# An answer caused by one row's own params (juncdt 30013, 30014, 30017) is bad input for that row.
def test_one_rows_overlong_param_rejects_that_row_only(connections: SandboxServer) -> None:
    rows = [{"phone": n, "params": {"name": f"客户{i}", "order": f"A{i}"}} for i, n in enumerate(AUDIENCE)]
    rows[1]["params"] = {"name": "长" * 400, "order": "A1"}  # the sandbox renders it: over 300 characters
    summary = JuncdtHook().send_bulk(rows, "TPL_NOTICE", bulk=SendSettings(concurrency=1))
    assert counts(summary) == {"accepted": 5, "rejected": 1}
    assert summary.stopped is None
    assert [key.split(" ")[:2] for key in summary.reasons] == [["rejected:", "30017"]]
    assert sorted(d["number"] for d in deliveries(connections)) == sorted(set(AUDIENCE) - {AUDIENCE[1]})


def test_an_overlong_shared_message_stops_the_campaign(connections: SandboxServer) -> None:
    # The same params for everyone: every request would get the same answer.
    summary = send("juncdt", AUDIENCE, template="TPL_NOTICE", params={"name": "长" * 400, "order": "A1"})
    assert counts(summary) == {"failed": 2, "not_sent": 4}
    assert summary.stopped is not None and "30017" in summary.stopped
    assert deliveries(connections) == []


# Retry-After: a gateway that says when to come back is not asked sooner.
def _gap(server: SandboxServer, gateway: str) -> float:
    first, second = sent_requests(server, gateway)
    return float(second["at"] - first["at"])


@pytest.mark.parametrize(
    ("gateway", "status", "retry_after", "at_least"),
    [
        ("juncdt", 429, "2", 2.0),
        ("ihuyi", 503, "2", 2.0),
        ("juncdt", 429, "date+3", 1.9),  # an HTTP date has whole seconds: 2 to 3 s from now
    ],
)
def test_the_retry_waits_as_long_as_retry_after_says(
    connections: SandboxServer, gateway: str, status: int, retry_after: str, at_least: float
) -> None:
    if retry_after == "date+3":
        retry_after = formatdate(time.time() + 3, usegmt=True)
    faults = {"http_error_status": status, "retry_after": retry_after, "http_error_times": 1}
    control(connections, "POST", "/_sandbox/faults", faults)
    summary = send(gateway, AUDIENCE[:1])
    assert counts(summary) == {"accepted": 1}
    assert _gap(connections, gateway) >= at_least  # the backoff alone waits at most 0.5 s here
    assert len(deliveries(connections)) == 1


@pytest.mark.parametrize("requests_per_second", [None, 100.0])
def test_a_retry_after_holds_every_request_not_only_the_one_that_got_it(
    connections: SandboxServer, requests_per_second: float | None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two requests at a time: once the 429 is back, the other worker must not go on sending the rest
    # of the audience while the refused batch waits. Only a request already in flight may arrive.
    faults = {"http_error_status": 429, "retry_after": "2", "http_error_times": 1}
    control(connections, "POST", "/_sandbox/faults", faults)
    settings = SendSettings(concurrency=2, numbers_per_request=1, requests_per_second=requests_per_second)
    summary = send("juncdt", AUDIENCE, settings)
    assert counts(summary) == {"accepted": 6}
    arrivals = [r["at"] for r in sent_requests(connections, "juncdt")]
    refused = arrivals[0]  # the sandbox's first request is the one it refused
    during_the_wait = [at for at in arrivals[1:] if refused < at < refused + 1.9]
    assert len(during_the_wait) <= 1, during_the_wait
    assert sorted(d["number"] for d in deliveries(connections, "juncdt")) == AUDIENCE
    log = capsys.readouterr().out  # where the hooks' task loggers write
    said = [line for line in log.splitlines() if "Holding every request" in line]
    assert len(said) == 1 and "for 2 s: juncdt sendMessage: HTTP 429 from gateway, asked to retry" in said[0]


def test_a_retry_after_beyond_the_time_budget_fails_the_batch_now(connections: SandboxServer) -> None:
    # Each request may take 300 s in all (RetryPolicy.max_elapsed): an hour's wait is not worth it.
    faults = {"http_error_status": 429, "retry_after": "3600", "http_error_times": 1}
    control(connections, "POST", "/_sandbox/faults", faults)
    started = time.monotonic()
    summary = send("juncdt", AUDIENCE[:4])
    assert time.monotonic() - started < 10
    assert counts(summary) == {"failed": 2, "accepted": 2}
    [reason] = summary.reasons
    assert reason.startswith("failed: transport") and "HTTP 429" in reason and "retry after 3600 s" in reason
    assert len(sent_requests(connections, "juncdt")) == 2  # the failed batch once, the next one once

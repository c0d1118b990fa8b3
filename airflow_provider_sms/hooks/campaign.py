"""Run a bulk send from Airflow: recipients from lists, XComs or files (``ObjectStoragePath``),
reports to any storage Airflow's fsspec reaches, the ledger chosen by connection. Shared by both hooks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_sms.dispatch import event_loop
from airflow_provider_sms.dispatch.engine import Campaign, CampaignOptions, Log
from airflow_provider_sms.dispatch.recipients import (
    Cleaner,
    Row,
    check_file_name,
    looks_like_file,
    rows_from_file,
    rows_from_items,
    text_encoding,
)
from airflow_provider_sms.dispatch.report import ReportWriter
from airflow_provider_sms.dispatch.retry import RetryPolicy
from airflow_provider_sms.dispatch.stop_signals import StoppedBySignal
from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.protocol.phones import split_numbers

if TYPE_CHECKING:
    from typing import TypeAlias

    from airflow_provider_sms.dispatch.ledger import Ledger
    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.dispatch.policy import ContactPolicy
    from airflow_provider_sms.dispatch.senders import BatchSender
    from airflow_provider_sms.dispatch.settings import SendSettings

    # A ledger, or a factory the campaign calls when it starts (after the arguments were checked).
    LedgerSource: TypeAlias = Ledger | Callable[[], Ledger | None] | None

Recipients = Any  # a list of numbers or rows, one string of numbers, or a file path / URI


def open_path(uri: str) -> Any:
    """A local path stays a ``Path``; a URI becomes Airflow's ``ObjectStoragePath`` (fsspec)."""
    if "://" in uri and not uri.startswith("file://"):
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(uri)
    return Path(uri.removeprefix("file://"))


def resolve_rows(recipients: Recipients, encoding: str = "utf-8") -> Callable[[], Iterable[Row]]:
    """A factory of fresh row streams (the balance guard reads the input twice). Refuses empty input,
    and a file name or ``encoding`` that cannot be read, before anything is sent."""
    if recipients is None or (isinstance(recipients, (list, tuple, str)) and not recipients):
        raise InvalidInputError("no recipients: the audience is empty")
    if isinstance(recipients, (str, Path)) and looks_like_file(str(recipients)):
        name = str(recipients).strip()
        check_file_name(name)
        text_encoding(encoding)
        path = open_path(name)
        return lambda: rows_from_file(path, name, encoding)
    if hasattr(recipients, "open") and hasattr(recipients, "name"):
        text_encoding(encoding)
        return lambda: rows_from_file(recipients, str(recipients.name), encoding)
    if isinstance(recipients, (str, int)):
        items = split_numbers(recipients)
        return lambda: rows_from_items(items)
    if isinstance(recipients, (list, tuple)):
        return lambda: rows_from_items(recipients)
    if isinstance(recipients, Iterable):  # e.g. a lazy XCom sequence from a mapped upstream
        materialised = list(recipients)
        return lambda: rows_from_items(materialised)
    raise InvalidInputError(
        f"recipients must be a list, a string of numbers or a file URI, not {type(recipients).__name__}"
    )


def open_report(uri: str | None, fmt: str | None, unmasked: bool) -> ReportWriter | None:
    if not uri:
        return None
    kind = fmt or ("jsonl" if uri.lower().endswith((".jsonl", ".ndjson", ".json")) else "csv")
    path = open_path(uri)
    if not isinstance(path, Path):  # object storage: its own access control applies
        return ReportWriter(path.open("w", encoding="utf-8", newline=""), kind, unmasked=unmasked)
    # Outcomes per number (in clear with report_unmasked): readable by its owner only, like the ledger.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    path.chmod(0o600)  # a report written over an older one
    return ReportWriter(os.fdopen(fd, "w", encoding="utf-8", newline=""), kind, unmasked=unmasked)


def campaign_options(
    settings: SendSettings, preflight: Any = None, policy: ContactPolicy | None = None
) -> CampaignOptions:
    """The engine's options from a send's settings (a task's over its connection's: ``over``)."""
    return CampaignOptions(
        concurrency=settings.concurrency,
        requests_per_second=settings.requests_per_second,
        retry=RetryPolicy(max_attempts=settings.max_attempts),
        resend_ambiguous=settings.resend_ambiguous,
        dry_run=settings.dry_run,
        progress_interval=settings.progress_interval,
        preflight=preflight,
        max_consecutive_ambiguous=settings.max_consecutive_ambiguous,
        policy=policy,
        price_per_message=settings.price_per_message,
    )


def run_bulk(
    sender: BatchSender,
    rows: Callable[[], Iterable[Row]],
    cleaner: Callable[[], Cleaner],
    options: CampaignOptions,
    bulk: SendSettings,
    *,
    ledger: LedgerSource = None,
    log: Log | None = None,
    campaign: str = "",
) -> Summary:
    """Run the campaign to the end (blocking) and return its summary; the report is closed after.

    ``ledger`` may be a factory: it is called once the campaign starts, after every argument was
    checked. Raises :class:`StoppedBySignal` (with the summary) when a stop signal ended the campaign.
    """
    report = (
        None
        if bulk.dry_run and not bulk.report_uri
        else open_report(bulk.report_uri, bulk.report_format, bulk.report_unmasked)
    )
    job = Campaign(sender, rows, cleaner, options, ledger=ledger, report=report, log=log, campaign=campaign)
    try:
        summary = event_loop.run(job.run())
    finally:
        if report is not None:
            report.close()
    summary.report_uri = bulk.report_uri
    window = bulk.window
    if summary.paused and window is not None:
        from airflow_provider_sms.hooks.policy import utc_now

        summary.resume_at = window.next_open(utc_now()).isoformat(timespec="seconds")
    if job.signals.received is not None:
        raise StoppedBySignal(summary, job.signals)
    return summary

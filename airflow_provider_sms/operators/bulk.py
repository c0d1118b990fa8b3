"""What MMS and SMS sends share: bulk settings, campaign key, ledger, report, and the failure policy.

Imports stay light at DAG-parse time: hooks, httpx and the engine load in ``execute``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_sms.templating import RendersQuietly

if TYPE_CHECKING:
    from datetime import datetime

    import jinja2
    from airflow.sdk import Context

    from airflow_provider_sms.dispatch.ledger import Ledger
    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.dispatch.settings import SendSettings
    from airflow_provider_sms.hooks.campaign import LedgerSource

# The contact policy's settings (dispatch.policy), each a task argument and a template field.
POLICY_FIELDS = (
    "purpose",
    "quiet_hours",
    "quiet_hours_timezone",
    "max_per_number",
    "per",
    "opt_out_pattern",
    "suppression_uri",
    "suppression_conn_id",
    "suppression_sql",
    "max_recipients",
    "expected_recipients",
    "expected_tolerance",
    "price_per_message",
)
BULK_TEMPLATE_FIELDS = (
    "dedupe_key",
    "report_uri",
    "is_dry_run",
    "resend_ambiguous",
    "report_unmasked",
    "requests_per_second",
    "concurrency",
    "numbers_per_request",
    "max_attempts",
    "max_failed_ratio",
    "max_rejected_ratio",
    "progress_interval",
    "lease_seconds",
    "heartbeat_seconds",
    "retention_days",
    "encoding",
    "max_consecutive_ambiguous",
    *POLICY_FIELDS,
)


class RenderedAudience:
    """A rendered audience as Airflow shows and stores it (the Rendered Template view, the metadata
    database): how many recipients and the first few numbers, masked. Only the task reads ``value``."""

    PREVIEW = 3

    def __init__(self, value: Any) -> None:
        self.value = value

    def serialize(self) -> dict[str, Any]:  # what Airflow's rendered-fields serialization calls
        from airflow_provider_sms.dispatch.recipients import phone_column
        from airflow_provider_sms.protocol.phones import mask, split_numbers

        items = split_numbers(self.value) if isinstance(self.value, (str, int)) else self.value
        if not isinstance(items, Sequence):  # not read here: it may be a one-shot iterator
            return {"recipients": None, "first (masked)": []}
        first = []
        for item in items[: self.PREVIEW]:
            if isinstance(item, Mapping):  # a row: its params may be personal too, never shown
                key = phone_column(item)
                first.append(mask(item[key] if key else ""))
            else:
                first.append(mask(item))
        return {"recipients": len(items), "first (masked)": first}

    def __str__(self) -> str:
        return str(self.serialize())


class BulkSendOperator(RendersQuietly, BaseOperator):
    """Base of the send operators: one campaign per task instance, one outcome per recipient.

    Every setting below may be left out (None: the connection's extra, else the default of
    :class:`~airflow_provider_sms.dispatch.settings.SendSettings`) or given by a template: numbers as
    numeric text, yes/no settings as true/false, yes/no, on/off or 1/0. Anything else fails the task
    before anything is sent, the error naming each bad argument.

    :param concurrency: requests in flight at once (1 to 512; default 16).
    :param requests_per_second: never exceeded (0.1 to 100,000; default: no limit beyond concurrency).
    :param numbers_per_request: numbers in one request (up to the gateway's maximum).
    :param max_attempts: tries of one request on transient faults (1 to 20; default 4).
    :param dry_run: validate and estimate (requests, time), send nothing.
    :param report_uri: write a per-recipient report (CSV, or JSON Lines for ``.jsonl``) to this path or
        URI (any storage Airflow's ``ObjectStoragePath`` reaches); numbers masked unless ``report_unmasked``.
    :param max_failed_ratio: fail the task (Airflow may retry; with the ledger a retry resends only what
        did not go out) when more than this share (0 to 1) of attempted recipients failed. Default 0:
        any failure.
    :param max_rejected_ratio: fail (no retry) when more than this share of recipients was rejected as bad
        input. Default None: rejections are reported, never fatal.
    :param dedupe_key: campaign key of the ledger. Default: this task instance (dag, task, run, map index),
        so a retry resumes. Set one key (e.g. ``"promo-2026-11"``) to never text a number twice across runs
        and mapped task instances.
    :param use_ledger: record outcomes durably (SQLite under ``AIRFLOW_HOME`` by default).
    :param ledger_conn_id: an Airflow connection to a shared SQL database for the ledger (needed when
        workers run on several machines).
    :param resend_ambiguous: resend recipients whose earlier request may have been delivered.
    :param progress_interval: seconds between progress lines (1 to 86,400; default 10).
    :param encoding: text encoding of a recipients file (default ``utf-8``, a BOM tolerated;
        ``gb18030`` reads GBK exports). A row that does not decode stops the campaign there: the rows
        before it keep their outcome, it and the rows after it end ``not_sent``.
    :param max_consecutive_ambiguous: requests in a row that may end ambiguous before the campaign
        stops (a gateway or network swallowing requests); 0 turns this off. Default 10.
    :param lease_seconds: how long this task's claims outlive its last heartbeat if it dies without
        closing the ledger (default 60): another task of the campaign then takes them over. A task
        that finds numbers held by another waits for them up to this long before it ends.
    :param heartbeat_seconds: how often a running task renews its lease (default 10; at most half the
        lease).
    :param retention_days: finished ledger rows older than this are pruned when a campaign ends
        (default 180; numbers pruned may be texted again by the same campaign key).
    :param purpose: ``marketing`` (the default), ``notification`` or ``verification``. Marketing gets
        quiet hours, the frequency cap and the opt-out check of ``template_text``.
    :param quiet_hours: marketing's daily window (default ``08:00-21:00``; ``off``: any time) in
        ``quiet_hours_timezone`` (default ``Asia/Shanghai``). Outside it the task defers (no worker
        slot) until it opens; at its end the campaign stops, the rest ends ``deferred`` and the task
        defers again, resuming through the ledger (nobody texted twice).
    :param max_per_number: marketing: at most this many accepted messages per number in ``per``
        (default ``24h``), across campaigns; numbers over it end ``capped``.
    :param opt_out_pattern: a regular expression a marketing ``template_text`` must match.
    :param suppression_uri: numbers never to text: a file (one a line, or a CSV ``phone`` column).
    :param suppression_conn_id: an Airflow SQL connection to run ``suppression_sql`` on (its first
        column: numbers never to text). The ledger's ``sms_suppressions`` table is read too.
    :param max_recipients: fail before sending when the audience has more unique recipients.
    :param expected_recipients: fail before sending unless the audience has this many, within
        ``expected_tolerance`` (a share; default 0.1).
    :param price_per_message: a dry run estimates the cost (recipients to send x this price).
    """

    template_fields: Sequence[str] = BULK_TEMPLATE_FIELDS
    template_fields_renderers: ClassVar[dict[str, str]] = {"recipients": "json"}
    ui_color = "#e8f4e8"
    quiet_field = "recipients"

    def __init__(
        self,
        *,
        recipients: Any,
        concurrency: int | str | None = None,
        requests_per_second: float | str | None = None,
        numbers_per_request: int | str | None = None,
        max_attempts: int | str | None = None,
        dry_run: bool | str | None = None,
        report_uri: str | None = None,
        report_format: str | None = None,
        report_unmasked: bool | str | None = None,
        max_failed_ratio: float | str | None = None,
        max_rejected_ratio: float | str | None = None,
        dedupe_key: str | None = None,
        use_ledger: bool | str | None = None,
        ledger_conn_id: str | None = None,
        resend_ambiguous: bool | str | None = None,
        progress_interval: float | str | None = None,
        lease_seconds: float | str | None = None,
        heartbeat_seconds: float | str | None = None,
        retention_days: float | str | None = None,
        encoding: str | None = None,
        max_consecutive_ambiguous: int | str | None = None,
        purpose: str | None = None,
        quiet_hours: str | None = None,
        quiet_hours_timezone: str | None = None,
        max_per_number: int | str | None = None,
        per: str | None = None,
        opt_out_pattern: str | None = None,
        suppression_uri: str | None = None,
        suppression_conn_id: str | None = None,
        suppression_sql: str | None = None,
        max_recipients: int | str | None = None,
        expected_recipients: int | str | None = None,
        expected_tolerance: float | str | None = None,
        price_per_message: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recipients = recipients
        self.concurrency = concurrency
        self.requests_per_second = requests_per_second
        self.numbers_per_request = numbers_per_request
        self.max_attempts = max_attempts
        self.is_dry_run = dry_run  # BaseOperator.dry_run() is a method
        self.report_uri = report_uri
        self.report_format = report_format
        self.report_unmasked = report_unmasked
        self.max_failed_ratio = max_failed_ratio
        self.max_rejected_ratio = max_rejected_ratio
        self.dedupe_key = dedupe_key
        self.use_ledger = use_ledger
        self.ledger_conn_id = ledger_conn_id
        self.resend_ambiguous = resend_ambiguous
        self.progress_interval = progress_interval
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.retention_days = retention_days
        self.encoding = encoding
        self.max_consecutive_ambiguous = max_consecutive_ambiguous
        self.purpose = purpose
        self.quiet_hours = quiet_hours
        self.quiet_hours_timezone = quiet_hours_timezone
        self.max_per_number = max_per_number
        self.per = per
        self.opt_out_pattern = opt_out_pattern
        self.suppression_uri = suppression_uri
        self.suppression_conn_id = suppression_conn_id
        self.suppression_sql = suppression_sql
        self.max_recipients = max_recipients
        self.expected_recipients = expected_recipients
        self.expected_tolerance = expected_tolerance
        self.price_per_message = price_per_message

    # -- rendering ------------------------------------------------------------------------------------
    def render_quiet(self, context: Context, jinja_env: jinja2.Environment, seen_oids: set[int]) -> None:
        """Keep the audience out of what Airflow logs, stores and shows.

        Airflow stores rendered fields unmasked in its metadata database (the Rendered Template view),
        and when a template fails it logs the unrendered value: numbers and personal params either way.
        ``recipients`` is rendered here instead: a failure names the field and the error, numbers
        masked, and the rendered value is wrapped in a :class:`RenderedAudience`. Airflow renders this
        way the task that runs, mapped or not; a file URI stays as it is.
        """
        from airflow_provider_sms.dispatch.recipients import looks_like_file

        super().render_quiet(context, jinja_env, seen_oids)
        value = self.recipients
        if value is None or isinstance(value, RenderedAudience):
            return
        if isinstance(value, str) and looks_like_file(value):
            return
        self.recipients = RenderedAudience(value)

    def audience(self) -> Any:
        """The recipients as given and rendered (what ``recipients`` held before it was masked)."""
        value = self.recipients
        return value.value if isinstance(value, RenderedAudience) else value

    # -- pieces ---------------------------------------------------------------------------------------
    def given_settings(self) -> dict[str, Any]:
        """The send settings this task was given, as given or rendered (None: not given)."""
        return {
            "concurrency": self.concurrency,
            "requests_per_second": self.requests_per_second,
            "numbers_per_request": self.numbers_per_request,
            "max_attempts": self.max_attempts,
            "dry_run": self.is_dry_run,
            "resend_ambiguous": self.resend_ambiguous,
            "report_uri": self.report_uri,
            "report_format": self.report_format,
            "report_unmasked": self.report_unmasked,
            "use_ledger": self.use_ledger,
            "progress_interval": self.progress_interval,
            "lease_seconds": self.lease_seconds,
            "heartbeat_seconds": self.heartbeat_seconds,
            "retention_days": self.retention_days,
            "max_failed_ratio": self.max_failed_ratio,
            "max_rejected_ratio": self.max_rejected_ratio,
            "encoding": self.encoding,
            "max_consecutive_ambiguous": self.max_consecutive_ambiguous,
            **{name: getattr(self, name) for name in POLICY_FIELDS},
        }

    def bulk_settings(self) -> SendSettings:
        """This task's settings, checked (they may come from templates): an error names each bad argument."""
        from airflow_provider_sms.dispatch.settings import send_settings

        return send_settings(self.given_settings())

    @staticmethod
    def task_identity(context: Context) -> str:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return f"{ti.dag_id}/{ti.task_id}/{context['run_id']}/{map_index if map_index is not None else -1}"

    def campaign_key(self, context: Context) -> str:
        return str(self.dedupe_key) if self.dedupe_key else self.task_identity(context)

    def open_ledger(self, context: Context, settings: SendSettings) -> Ledger | None:
        """The campaign's ledger (opened by the campaign once every argument was checked)."""
        if not settings.use_ledger:
            return None  # a dry run opens it too: the policy's effect needs the contact history
        from airflow_provider_sms.hooks.ledger import SmsLedgerHook

        hook = SmsLedgerHook(self.ledger_conn_id)
        return hook.ledger(self.campaign_key(context), self.task_identity(context), settings)

    # -- the flow -------------------------------------------------------------------------------------
    def send(self, context: Context, bulk: SendSettings, ledger: LedgerSource) -> Summary:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        from functools import partial

        from airflow_provider_sms.dispatch.stop_signals import StoppedBySignal
        from airflow_provider_sms.errors import SmsProviderError
        from airflow_provider_sms.hooks.policy import QuietHoursClosed

        try:
            # First: a bad argument fails the task before any connection, ledger or request is opened;
            # the hook checks the rest before the campaign opens the ledger (from this factory).
            bulk = self.bulk_settings()
            summary = self.send(context, bulk, partial(self.open_ledger, context, bulk))
        except QuietHoursClosed as closed:  # nothing was sent: wait for the window, holding no slot
            self.log.info("%s: deferring until then", closed)
            self.defer_until(closed.opens_at)
        except StoppedBySignal as stop:
            self.publish(context, stop.summary)
            stop.pass_on()  # Airflow's own handler: AirflowTaskTimeout for execution_timeout
            raise AirflowException(
                f"campaign stopped: {stop}; a retry resends only what did not go out"
            ) from None
        except (SmsProviderError, ValueError) as exc:
            # E.g. the balance guard's query was throttled: Airflow's retries may help. Bad input, a
            # fatal or undocumented code, too little balance: retrying cannot.
            if isinstance(exc, SmsProviderError) and exc.retryable:
                raise
            raise AirflowFailException(str(exc)) from exc
        if summary.paused and not summary.counts["deferred"]:
            summary.stopped = None  # the window closed as the last requests answered: nothing waits
        result = self.publish(context, summary)
        if summary.paused and summary.counts["deferred"] and summary.resume_at:
            from datetime import datetime

            self.log.info(
                "Quiet hours began: %d recipient(s) deferred until %s (the ledger resumes the campaign)",
                summary.counts["deferred"],
                summary.resume_at,
            )
            self.defer_until(datetime.fromisoformat(summary.resume_at))
        self.apply_policy(summary, bulk)
        return result

    def defer_until(self, moment: datetime) -> NoReturn:
        """Free the worker until ``moment`` (the quiet hours' end), then run the send again: the
        ledger gives what went out before ``accepted_earlier`` and sends the rest."""
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        self.defer(trigger=DateTimeTrigger(moment), method_name="resume")

    def resume(self, context: Context, event: Any = None) -> dict[str, Any]:
        """The window opened: send (what is left of) the campaign."""
        return self.execute(context)

    def publish(self, context: Context, summary: Summary) -> dict[str, Any]:
        """Push the campaign's summary (a small dict) as the ``summary`` XCom, whatever comes next."""
        result = summary.as_dict()
        context["ti"].xcom_push(key="summary", value=result)
        return result

    def on_kill(self) -> None:
        """Stop this task's campaign: no new request, the ones in flight get a short grace, and every
        recipient keeps an outcome (Airflow calls this on a timeout and on "Mark failed")."""
        from airflow_provider_sms.dispatch.engine import stop_running

        stop_running("the task was killed (on_kill)")

    def apply_policy(self, summary: Summary, settings: SendSettings) -> None:
        """Decide the task's outcome from the campaign's (documented in the README, Delivery guarantees)."""
        counts = ", ".join(f"{k}={v}" for k, v in summary.counts.items() if v)
        if summary.counts["ambiguous"]:
            self.log.warning(
                "%d recipient(s) may or may not have received the message (ambiguous); they "
                "will not be resent unless resend_ambiguous=True",
                summary.counts["ambiguous"],
            )
        if summary.stopped:
            if summary.stop_retryable:
                raise AirflowException(
                    f"campaign stopped: {summary.stopped} ({counts}); a retry resends only what did not "
                    "go out"
                )
            raise AirflowFailException(f"campaign stopped: {summary.stopped} ({counts})")
        if summary.failed_ratio() > settings.max_failed_ratio:
            raise AirflowException(
                f"{summary.failed_ratio():.1%} of attempted recipients failed, above max_failed_ratio="
                f"{settings.max_failed_ratio:.1%} ({counts}); a retry resends only what did not go out"
            )
        rejected = settings.max_rejected_ratio
        if rejected is not None and summary.rejected_ratio() > rejected:
            raise AirflowFailException(
                f"{summary.rejected_ratio():.1%} of recipients were rejected as bad input, above "
                f"max_rejected_ratio={rejected:.1%} ({counts})"
            )
        c = summary.counts
        sent = c["accepted"] + c["skipped"] + c["accepted_earlier"]
        if not summary.dry_run and not sent and c["rejected"] + c["ambiguous"]:
            raise AirflowFailException(
                f"no recipient was accepted: every one was rejected or may not have been delivered ({counts})"
            )

"""The ledger's database and hash key from Airflow: a connection for a shared database, or SQLite
under ``AIRFLOW_HOME`` with a key file beside it. Also pruning and the contact history by hand."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_sms.dispatch import event_loop
from airflow_provider_sms.dispatch.sql_ledger import SqlLedger, key_from_text, load_key
from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.ledger_url import ledger_url_from_connection

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from airflow_provider_sms.dispatch.settings import SendSettings

DEFAULT_FILE = "sms_ledger.db"


def airflow_home() -> str:
    return os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")


class SmsLedgerHook(BaseHook):
    """Where the ledger lives. ``ledger_conn_id``: a ``postgres`` or ``sqlite`` connection (or any with
    a PostgreSQL/SQLite ``sqlalchemy_url`` extra) whose extra ``hash_key`` (a secret of 32+ characters,
    the same for every worker) keys the numbers' hashes. None: ``$AIRFLOW_HOME/sms_ledger.db`` with the
    key file ``$AIRFLOW_HOME/sms_ledger.key``, both created 0600 (one machine's ledger)."""

    hook_name = "SMS ledger"

    def __init__(self, ledger_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ledger_conn_id = ledger_conn_id

    def url_and_key(self) -> tuple[str, bytes]:
        from airflow.sdk.log import mask_secret

        if not self.ledger_conn_id:
            home = airflow_home()
            return f"sqlite:///{os.path.abspath(os.path.join(home, DEFAULT_FILE))}", load_key(home)
        conn_id = self.ledger_conn_id
        conn = self.get_connection(conn_id)
        extra = conn.extra_dejson if conn.extra else {}
        key = str(extra.get("hash_key") or "") if isinstance(extra, dict) else ""
        if not key:
            raise InvalidInputError(
                f"ledger connection {conn_id!r} needs the extra 'hash_key': a secret of 32 or more "
                "characters shared by every worker (the ledger stores numbers as hashes keyed by it)"
            )
        mask_secret(key)
        return ledger_url_from_connection(conn_id, conn), key_from_text(key, f"ledger connection {conn_id!r}")

    def ledger(self, campaign: str, task: str, settings: SendSettings) -> SqlLedger:
        """A ledger for one campaign and task try, with the settings' lease, heartbeat and retention."""
        url, key = self.url_and_key()
        return SqlLedger(
            url,
            campaign,
            task,
            key=key,
            resend_ambiguous=settings.resend_ambiguous,
            lease=settings.lease_seconds,
            heartbeat=settings.heartbeat_seconds,
            retention_days=settings.retention_days,
        )

    def _with_ledger(self, work: Callable[[SqlLedger], Awaitable[Any]]) -> Any:
        url, key = self.url_and_key()

        async def run() -> Any:
            ledger = SqlLedger(url, "maintenance", "maintenance", key=key)
            await ledger.open()
            try:
                return await work(ledger)
            finally:
                await ledger.close()

        return event_loop.run(run())

    def prune(self, older_than_days: float) -> int:
        """Delete the finished rows last changed more than ``older_than_days`` ago, in small
        transactions (campaigns keep running meanwhile); returns how many went. For a maintenance DAG."""
        if older_than_days <= 0:
            raise InvalidInputError(f"older_than_days must be positive, got {older_than_days}")
        deleted = int(self._with_ledger(lambda ledger: ledger.prune(older_than_days)))
        self.log.info("Pruned %d ledger rows older than %g days", deleted, older_than_days)
        return deleted

    def accepted_since(self, phones: Sequence[str], since: float) -> dict[str, int]:
        """How many messages were accepted for each of ``phones`` since ``since`` (epoch seconds),
        across campaigns: the contact history, looked up by the numbers' hashes."""
        return dict(self._with_ledger(lambda ledger: ledger.accepted_since(phones, since)))

    def add_suppressions(self, numbers: Iterable[object], reason: str = "opt-out") -> int:
        """Add numbers to the ledger's suppression table (``sms_suppressions``, by keyed hash): every
        later send using this ledger ends them ``suppressed``. Invalid numbers refuse the call before
        anything is written. Returns how many were new. E.g. fed by a DAG reading the replies (R, T,
        TD, 退订) collected elsewhere."""
        from airflow_provider_sms.protocol.phones import normalize_all

        normalised = normalize_all([str(n) for n in numbers])
        added = int(self._with_ledger(lambda ledger: ledger.suppressions.add(normalised, reason)))
        self.log.info("Suppression table: %d number(s) given, %d new", len(normalised), added)
        return added

"""The suppression table: numbers never to text (opt-outs, complaints), in the ledger's database.

Stored as the ledger's keyed hash of the number, like the ledger's own rows; read by every send that
uses that ledger, added to by ``SmsLedgerHook.add_suppressions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Column, Float, String, Table, literal, select

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_sms.dispatch.sql_ledger import SqlLedger


class SuppressionTable:
    """``sms_suppressions`` beside ``ledger``'s tables, through its thread and with its hash key."""

    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger
        self.table = Table(
            "sms_suppressions",
            ledger.entries.metadata,  # created with the ledger's tables
            Column("phone", String(32), primary_key=True),  # the number's keyed hash
            Column("reason", String(64), nullable=False, default=""),
            Column("added_at", Float, nullable=False),  # seconds since the epoch
            sqlite_with_rowid=False,
        )

    async def contains(self, phones: Sequence[str]) -> set[str]:
        """Those of ``phones`` in the table."""
        by_hash = self.ledger.by_hash(phones)
        if not by_hash:
            return set()
        query = select(self.table.c.phone).where(self.ledger.among(self.table.c.phone))
        given = {"hashes": self.ledger.pack(list(by_hash))}
        rows = await self.ledger.run(lambda conn: conn.execute(query, given).scalars().all())
        return {by_hash[h] for h in rows}

    async def add(self, phones: Sequence[str], reason: str = "") -> int:
        """Add ``phones`` (normalised) in one statement; returns how many were new."""
        hashes = list(self.ledger.by_hash(phones))
        if not hashes:
            return 0
        values = {"reason": literal(reason[:64], String), "added_at": literal(self.ledger.clock(), Float)}
        statement = self.ledger.insert_new(self.table, **values)
        given = {"hashes": self.ledger.pack(hashes)}
        return int(await self.ledger.run(lambda conn: conn.execute(statement, given).rowcount))

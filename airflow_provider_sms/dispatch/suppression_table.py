"""The suppression table: numbers never to text (opt-outs, complaints), in the ledger's database.

Stored as the ledger's keyed hash of the number, like the ledger's own rows; read by every send that
uses that ledger, added to by ``SmsLedgerHook.add_suppressions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Float, String, Table, func, select

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
        """Add ``phones`` (normalised); returns how many were new."""
        now = self.ledger.clock()
        rows = [{"phone": h, "reason": reason[:64], "added_at": now} for h in self.ledger.by_hash(phones)]
        if not rows:
            return 0
        insert: Any
        if self.ledger.postgres:
            from sqlalchemy.dialects import postgresql

            insert = postgresql.insert(self.table)
        else:
            from sqlalchemy.dialects import sqlite

            insert = sqlite.insert(self.table)
        statement = insert.on_conflict_do_nothing(index_elements=["phone"])
        count = select(func.count()).select_from(self.table)
        before = await self.ledger.run(lambda conn: conn.execute(count).scalar_one())
        await self.ledger.run(lambda conn: conn.execute(statement, rows))
        after = await self.ledger.run(lambda conn: conn.execute(count).scalar_one())
        return int(after) - int(before)

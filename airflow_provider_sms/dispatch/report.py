"""Per-recipient report (CSV or JSON Lines), streamed as outcomes arrive; numbers masked by default."""

from __future__ import annotations

import csv
import json
from typing import IO

from airflow_provider_sms.protocol.phones import mask

COLUMNS = ("row", "phone", "outcome", "code", "message", "gateway_id", "attempts")


class ReportWriter:
    def __init__(self, stream: IO[str], fmt: str = "csv", *, unmasked: bool = False) -> None:
        if fmt not in ("csv", "jsonl"):
            raise ValueError(f"report format must be csv or jsonl, got {fmt!r}")
        self.stream = stream
        self.fmt = fmt
        self.unmasked = unmasked
        self.rows = 0
        self._csv = csv.writer(stream) if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(COLUMNS)

    def write(
        self,
        row: int,
        phone: str,
        outcome: str,
        code: str = "",
        message: str = "",
        gateway_id: str = "",
        attempts: int = 0,
        *,
        masked: bool = False,
    ) -> None:
        shown = phone if masked or self.unmasked else mask(phone)
        values = (row, shown, outcome, code, message, gateway_id, attempts)
        if self._csv is not None:
            self._csv.writerow(values)
        else:
            self.stream.write(json.dumps(dict(zip(COLUMNS, values, strict=True)), ensure_ascii=False) + "\n")
        self.rows += 1

    def close(self) -> None:
        self.stream.flush()
        self.stream.close()

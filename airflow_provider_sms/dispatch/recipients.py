"""Recipients from lists, XComs or files (CSV, JSON Lines), cleaned and deduplicated as a stream.

Memory stays flat with the audience: rows are read one at a time; dedupe keeps one int per number.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol

from airflow_provider_sms.gateways.errors import InvalidInputError
from airflow_provider_sms.protocol import phones

PHONE_COLUMNS = ("phone", "mobile", "number", "phone_number")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


class Openable(Protocol):
    """``pathlib.Path`` or Airflow's ``ObjectStoragePath`` (local, S3, GCS... through fsspec)."""

    def open(self, mode: str, /) -> IO[Any]: ...


# Row, Recipient and Refused are built for every input row (millions): plain slotted dataclasses, not
# frozen ones, whose __init__ costs three times as much. Nothing changes them after they are built.


@dataclass(slots=True)
class Row:
    """One input row as given: the number as typed, and its own params (None when it has none)."""

    index: int
    phone: object
    params: Mapping[str, Any] | None = None
    problem: str | None = None  # the row could not be read (e.g. a line that is not JSON)


@dataclass(slots=True)
class Recipient:
    """A clean, unique recipient: normalised number and the params its message is rendered with."""

    index: int
    phone: str
    params: Mapping[str, str] | None = None
    personal: bool = False  # params came (at least partly) from the row itself


@dataclass(slots=True)
class Refused:
    """An input row set aside before sending, with the reason (bad number, params...) or as a duplicate."""

    index: int
    masked: str
    reason: str
    duplicate: bool = False


FILE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")


def looks_like_file(value: str) -> bool:
    """A recipients string is a file when it is a URI, a path (numbers never hold a slash) or ends like
    a data file; else it is numbers."""
    text = value.strip().lower()
    return "://" in text or "/" in text or "\\" in text or text.endswith(FILE_SUFFIXES)


def check_file_name(name: str) -> None:
    """Refuse, before anything is read or sent, a file whose format the name does not tell."""
    if not name.strip().lower().endswith(FILE_SUFFIXES):
        raise InvalidInputError(
            f"recipients file {name!r}: name it .csv (a phone column) or .jsonl (one JSON object per "
            "line); compressed files are not read"
        )


def phone_column(item: Mapping[str, Any]) -> str | None:
    """The key of a row's number: the first of ``PHONE_COLUMNS`` the row has."""
    return next((k for k in PHONE_COLUMNS if k in item), None)


def _row_from_mapping(index: int, item: Mapping[str, Any]) -> Row:
    phone_key = phone_column(item)
    if phone_key is None:
        return Row(index, None, problem=f"row {index + 1} has no phone field")
    if "params" in item:
        params = item["params"]
        if isinstance(params, str):
            try:
                params = json.loads(params) if params.strip() else None
            except json.JSONDecodeError:
                return Row(index, item[phone_key], problem=f"row {index + 1}: params is not JSON")
        return Row(index, item[phone_key], params or None)
    rest = {k: v for k, v in item.items() if k != phone_key and v not in (None, "")}
    return Row(index, item[phone_key], rest or None)


def rows_from_items(items: Iterable[Any]) -> Iterator[Row]:
    """Numbers (str/int) or ``{"phone": ..., "params": {...}}`` mappings, e.g. from an XCom."""
    for index, item in enumerate(items):
        if type(item) is str:  # the common case, before the costlier ABC check
            yield Row(index, item)
        elif isinstance(item, Mapping):
            yield _row_from_mapping(index, item)
        else:
            yield Row(index, item)


def _rows_from_csv(stream: IO[str]) -> Iterator[Row]:
    reader = csv.DictReader(stream)
    if not reader.fieldnames or not any(c in reader.fieldnames for c in PHONE_COLUMNS):
        raise InvalidInputError(f"CSV recipients need a column named one of {', '.join(PHONE_COLUMNS)}")
    for index, record in enumerate(reader):
        yield _row_from_mapping(index, record)


def _rows_from_jsonl(stream: IO[str]) -> Iterator[Row]:
    for index, line in enumerate(stream):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            yield Row(index, None, problem=f"line {index + 1} is not JSON")
            continue
        if isinstance(item, Mapping):
            yield _row_from_mapping(index, item)
        else:
            yield Row(index, item)


def rows_from_file(path: Openable, name: str) -> Iterator[Row]:
    """Stream rows from a CSV or JSON Lines file (format by extension; ``.json`` is read as JSON Lines)."""
    check_file_name(name)
    lower = name.lower()
    with path.open("rb") as raw:
        stream = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        if lower.endswith(".csv"):
            yield from _rows_from_csv(stream)
        else:
            yield from _rows_from_jsonl(stream)


def template_params(template_text: str | None) -> frozenset[str] | None:
    """Names of ``${name}`` placeholders in a juncdt template text, when the user gave the text."""
    return frozenset(_PLACEHOLDER.findall(template_text)) if template_text else None


def render(template_text: str, params: Mapping[str, str] | None) -> str:
    values = params or {}
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template_text)


class Cleaner:
    """Normalise numbers, fold duplicates, merge and check params; each row yields one item."""

    def __init__(
        self,
        *,
        shared_params: Mapping[str, Any] | None = None,
        param_names: Iterable[str] | None = None,
        template_text: str | None = None,
        max_chars: int | None = None,
        use_params: bool = True,
    ) -> None:
        self.shared = {str(k): str(v) for k, v in (shared_params or {}).items()}
        names = set(param_names) if param_names is not None else template_params(template_text)
        self.expected: frozenset[str] | None = frozenset(names) if names is not None else None
        self.template_text = template_text
        self.max_chars = max_chars
        self.use_params = use_params  # MMS has no params: extra columns of a shared file are ignored
        self._seen: set[int] = set()
        # (expected names, answer) for rows without params of their own
        self._bare: tuple[frozenset[str] | None, tuple[dict[str, str] | None, str | None]] | None = None

    def _params(self, row: Row) -> tuple[dict[str, str] | None, str | None]:
        if row.params is not None and not isinstance(row.params, Mapping):
            return None, "params must be a mapping of names to values"
        if not self.use_params:
            return None, None
        if row.params is None:
            # Rows without params of their own (most of a big audience) all get the same answer, and
            # share one read-only dict, until a row with params settles the expected names.
            if self._bare is not None and self._bare[0] is self.expected:
                return self._bare[1]
            result = self._check(dict(self.shared))
            self._bare = (self.expected, result)
            return result
        return self._check({**self.shared, **{str(k): str(v) for k, v in row.params.items()}})

    def _check(self, merged: dict[str, str]) -> tuple[dict[str, str] | None, str | None]:
        if self.expected is None and merged:
            # No declared template: every row must carry the same names as the first one seen.
            self.expected = frozenset(merged)
        if self.expected is not None:
            missing = sorted(self.expected - merged.keys())
            extra = sorted(merged.keys() - self.expected)
            if missing or extra:
                parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                    [f"unexpected {', '.join(extra)}"] if extra else []
                )
                return None, "params " + "; ".join(parts)
        if self.template_text and self.max_chars:
            length = len(render(self.template_text, merged))
            if length > self.max_chars:
                return None, f"message is {length} characters, the gateway allows {self.max_chars}"
        return merged or None, None

    def clean(self, rows: Iterable[Row]) -> Iterator[Recipient | Refused]:
        seen = self._seen
        for row in rows:
            if row.problem:
                yield Refused(row.index, "<unreadable>", row.problem)
                continue
            try:
                phone = phones.normalize(row.phone)
            except phones.InvalidPhoneNumber as exc:
                yield Refused(row.index, exc.masked, exc.reason)
                continue
            key = int(phone)
            if key in seen:
                yield Refused(row.index, phones.mask(phone), "duplicate of an earlier row", duplicate=True)
                continue
            params, problem = self._params(row)
            if problem:
                yield Refused(row.index, phones.mask(phone), problem)
                continue
            seen.add(key)
            yield Recipient(row.index, phone, params, bool(row.params) and self.use_params)

"""Recipients from lists, XComs or files (CSV, JSON Lines, JSON arrays), cleaned and deduplicated as a
stream.

Memory stays flat with the audience: rows are read one at a time, none longer than ``MAX_ROW_CHARS``;
dedupe keeps one int per number.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import IO, Any, Protocol

from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.protocol import phones

PHONE_COLUMNS = ("phone", "mobile", "number", "phone_number")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")

MAX_ROW_CHARS = 65_536
"""The longest row read (a CSV record, a JSON line, an element of a JSON array), in characters: a real
row is a few hundred; a longer one is a broken export (a blob, a quote never closed), refused as that
row's problem, and reading it whole could exhaust the task's memory."""

_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes the encoding could not decode (surrogateescape)
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_STRUCTURE = re.compile(r'[\[\]{},"]')
_JSON_IN_STRING = re.compile(r'[\\"]')


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
    stop: bool = False  # nor can the rest of the input be trusted (bytes the encoding cannot decode)


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
    stop: bool = False  # the input stopped being readable here: not sent, and neither is any row after


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
            f"recipients file {name!r}: name it .csv (a phone column), .jsonl (one JSON object per "
            "line) or .json (an array); compressed files are not read"
        )


def phone_column(item: Container[str]) -> str | None:
    """The key of a row's number (or the CSV header's column): the first of ``PHONE_COLUMNS`` it has."""
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
    # Every other field is a param, empty or not: the Cleaner refuses an empty one as this row's
    # problem, so that the first row does not settle the expected names without it.
    rest = {k: v for k, v in item.items() if k != phone_key}
    return Row(index, item[phone_key], rest or None)


def _row_from_item(index: int, item: Any) -> Row:
    return _row_from_mapping(index, item) if isinstance(item, Mapping) else Row(index, item)


def rows_from_items(items: Iterable[Any]) -> Iterator[Row]:
    """Numbers (str/int) or ``{"phone": ..., "params": {...}}`` mappings, e.g. from an XCom."""
    for index, item in enumerate(items):
        if type(item) is str:  # the common case, before the costlier ABC check
            yield Row(index, item)
        elif isinstance(item, Mapping):
            yield _row_from_mapping(index, item)
        else:
            yield Row(index, item)


def text_encoding(encoding: str) -> str:
    """The codec a recipients file is read with; UTF-8 tolerates a BOM. Refuses an unknown name."""
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise InvalidInputError(
            f'recipients file: unknown encoding {encoding!r} (e.g. "utf-8", or "gb18030" for GBK exports)'
        ) from None
    return "utf-8-sig" if name == "utf-8" else name


class _Source:
    """A file being read: its name and encoding, for messages about its rows."""

    def __init__(self, name: str, encoding: str) -> None:
        self.name = phones.mask_in_text(name)
        self.encoding = encoding

    def undecodable(self, where: str) -> str:
        if codecs.lookup(self.encoding).name == "utf-8":
            hint = 'if it was exported as GBK/GB18030, pass encoding="gb18030"'
        else:
            hint = f'it was read as encoding="{self.encoding}"; is that the encoding it was exported in?'
        return f"{self.name}: {where} is not valid {self.encoding} text ({hint})"


def _too_long(line: str) -> bool:
    """A line read with ``readline(MAX_ROW_CHARS + 1)`` that was cut: more than the bound."""
    return len(line) > MAX_ROW_CHARS and line[-1] not in "\r\n"


def _skip_rest(readline: Callable[[int], str]) -> None:
    """Read past the rest of a line that was cut, a bounded piece at a time."""
    while (rest := readline(MAX_ROW_CHARS)) and rest[-1] not in "\r\n":
        pass


class _Found:
    """What ``_lines`` found in the row being parsed (the CSV reader pulls lines, it cannot say)."""

    __slots__ = ("kind",)

    def __init__(self) -> None:
        self.kind: str | None = None  # "undecodable", "too_long"


def _lines(stream: IO[str], found: _Found) -> Iterator[str]:
    """The stream's lines, none over the bound: a longer one is skipped and replaced by an empty line;
    ``found`` tells the row it belonged to. Only lines that are not ASCII are searched for bytes the
    encoding could not decode (their surrogate escapes): most lines of a big audience are ASCII."""
    readline = stream.readline
    for line in iter(partial(readline, MAX_ROW_CHARS + 1), ""):
        if _too_long(line):
            _skip_rest(readline)
            found.kind = found.kind or "too_long"
            yield "\n"
        elif not line.isascii() and _UNDECODABLE.search(line):
            found.kind = "undecodable"
            yield line
        else:
            yield line


def _rows_from_csv(stream: IO[str], source: _Source) -> Iterator[Row]:
    """Rows of a CSV file: the phone column and, as params, every other column of the header; a cell
    left empty is that row's problem (the Cleaner's). A row is numbered as data (the header is not a
    row) and by the line it starts on, as an editor shows it."""
    found = _Found()
    reader = csv.reader(_lines(stream, found))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InvalidInputError(f"{source.name}: the header (line 1) is not valid CSV: {exc}") from None
    if found.kind == "undecodable":
        raise InvalidInputError(source.undecodable("the header (line 1)"))
    if found.kind == "too_long":
        raise InvalidInputError(f"{source.name}: the header is longer than {MAX_ROW_CHARS:,} characters")
    phone_key = phone_column(header or ())
    if not header or phone_key is None:
        raise InvalidInputError(f"CSV recipients need a column named one of {', '.join(PHONE_COLUMNS)}")
    width = len(header)
    phone_at = header.index(phone_key)
    names = [column for at, column in enumerate(header) if at != phone_at]
    as_mapping = "params" in header  # a JSON params column: read as the rows of a list are
    index = -1
    last = reader.line_num  # the line the previous row ended on
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # parsing goes on at the next line
            index, line, last = index + 1, last + 1, reader.line_num
            found.kind = None
            yield Row(index, None, problem=f"row {index + 1} (line {line}) is not valid CSV: {exc}")
            continue
        line, last = last + 1, reader.line_num
        if found.kind is not None:
            index += 1
            where = f"row {index + 1} (line {line})"
            if found.kind == "undecodable":
                yield Row(index, None, problem=source.undecodable(where), stop=True)
            else:
                yield Row(index, None, problem=f"{where} is longer than {MAX_ROW_CHARS:,} characters")
            found.kind = None
            continue
        if not record:  # a blank line
            continue
        index += 1
        if len(record) != width:
            yield Row(
                index,
                None,
                problem=f"row {index + 1} (line {line}) has {len(record)} cells, the header {width}",
            )
        elif last > line and sum(map(len, record)) > MAX_ROW_CHARS:  # quoted cells over several lines
            yield Row(
                index,
                None,
                problem=f"row {index + 1} (line {line}) is longer than {MAX_ROW_CHARS:,} characters",
            )
        elif as_mapping:
            yield _row_from_mapping(index, dict(zip(header, record, strict=True)))
        elif names:
            phone = record.pop(phone_at)
            yield Row(index, phone, dict(zip(names, record, strict=True)))
        else:
            yield Row(index, record[0])


def _rows_from_jsonl(lines: Iterable[str], readline: Callable[[int], str], source: _Source) -> Iterator[Row]:
    """One JSON value per line (a number or a row object); a row is numbered by its line."""
    for index, line in enumerate(lines):
        if _too_long(line):
            _skip_rest(readline)
            yield Row(index, None, problem=f"line {index + 1} is longer than {MAX_ROW_CHARS:,} characters")
            continue
        if not line.isascii() and _UNDECODABLE.search(line):
            yield Row(index, None, problem=source.undecodable(f"line {index + 1}"), stop=True)
            continue
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            yield Row(index, None, problem=f"line {index + 1} is not JSON")
            continue
        yield _row_from_item(index, item)


class _Window:
    """A bounded window over a text stream, for reading a JSON array one element at a time."""

    def __init__(self, stream: IO[str], text: str) -> None:
        self.read = stream.read
        self.buf = ""
        self.pos = 0  # in buf
        self.base = 0  # offset of buf[0] in the file
        self.bad = -1  # offset of the first byte the encoding could not decode
        self.eof = False
        self._append(text)

    def _append(self, text: str) -> None:
        if self.bad < 0 and not text.isascii() and (hit := _UNDECODABLE.search(text)):
            self.bad = self.base + len(self.buf) + hit.start()
        self.buf += text

    def fill(self) -> bool:
        """Drop what was read, read more; False at the end of the file."""
        if self.eof:
            return False
        more = self.read(MAX_ROW_CHARS)
        if not more:
            self.eof = True
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos :]
        self.pos = 0
        self._append(more)
        return True

    def peek(self) -> str:
        """The next character after JSON whitespace ("" at the end of the file), not consumed."""
        while True:
            match = _JSON_SPACE.match(self.buf, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def ensure(self, chars: int) -> None:
        while len(self.buf) - self.pos < chars and self.fill():
            pass

    def skip_value(self) -> int | None:
        """Move past one (maybe malformed) value, to the ``,`` or ``]`` after it, following strings and
        nesting; return its length, or None when the file ends first."""
        start = self.base + self.pos
        depth = 0
        in_string = False
        while True:
            hit = (_JSON_IN_STRING if in_string else _JSON_STRUCTURE).search(self.buf, self.pos)
            if hit is None or (hit.group() == "\\" and hit.end() == len(self.buf)):
                self.pos = len(self.buf) if hit is None else hit.start()
                if not self.fill():
                    return None
                continue
            char = hit.group()
            self.pos = hit.end()
            if char == "\\":
                self.pos += 1  # the escaped character
            elif char == '"':
                in_string = not in_string
            elif char in "[{":
                depth += 1
            elif depth:
                depth -= 1 if char != "," else 0
            else:  # the , or ] that ends the value
                self.pos = hit.start()
                return self.base + self.pos - start


def _rows_from_json_array(window: _Window, source: _Source) -> Iterator[Row]:
    """Elements of a JSON array, streamed: each is decoded from a bounded window, never the whole file.
    An element that is not JSON (or too long) is that row's problem; reading goes on after it."""
    decode = json.JSONDecoder().raw_decode
    window.pos += 1  # the [
    if window.peek() == "]":
        window.pos += 1
        return
    index = 0
    stopped = False
    while True:
        if not window.peek():
            yield Row(index, None, problem=f"{source.name}: the array ends before its ]", stop=True)
            return
        window.ensure(MAX_ROW_CHARS + 1)  # a whole element of up to the bound is in the window
        start = window.pos
        try:
            item, end = decode(window.buf, start)
        except json.JSONDecodeError:
            length = window.skip_value()
            if length is None:
                problem = f"{source.name}: element {index + 1} is not JSON, and the array never ends"
                yield Row(index, None, problem=problem, stop=True)
                return
            item, end = None, -1
        else:
            length = end - start
            window.pos = end
        if not stopped and 0 <= window.bad < window.base + window.pos:  # the first undecodable byte
            yield Row(index, None, problem=source.undecodable(f"element {index + 1}"), stop=True)
            stopped = True
        elif length > MAX_ROW_CHARS:
            yield Row(index, None, problem=f"element {index + 1} is longer than {MAX_ROW_CHARS:,} characters")
        elif end < 0:
            yield Row(index, None, problem=f"element {index + 1} is not JSON")
        else:
            yield _row_from_item(index, item)
        index += 1
        after = window.peek()
        window.pos += 1
        if after == "]":
            break
        if not after:
            yield Row(index, None, problem=f"{source.name}: the array ends before its ]", stop=True)
            return
        if after != ",":
            yield Row(
                index, None, problem=f"{source.name}: element {index} is not followed by , or ]", stop=True
            )
            return
    if window.peek():
        yield Row(index, None, problem=f"{source.name}: text after the array's closing ]", stop=True)


def _rows_from_json(stream: IO[str], source: _Source) -> Iterator[Row]:
    """A ``.json`` file: a JSON array, or JSON Lines; anything else is refused before a row is read."""
    readline = stream.readline
    skipped: list[str] = []
    while (first := readline(MAX_ROW_CHARS + 1)) and not first.strip():
        skipped.append(first)
    if first.lstrip().startswith("["):
        window = _Window(stream, first.lstrip())
        yield from _rows_from_json_array(window, source)
        return
    if first and not _too_long(first) and (first.isascii() or not _UNDECODABLE.search(first)):
        try:
            json.loads(first)
        except json.JSONDecodeError:
            raise InvalidInputError(
                f"{source.name}: neither a JSON array (starting with [) nor JSON Lines (one number or "
                f"row object per line): line {len(skipped) + 1} is not JSON"
            ) from None
    lines = chain(skipped, [first] if first else [], iter(partial(readline, MAX_ROW_CHARS + 1), ""))
    yield from _rows_from_jsonl(lines, readline, source)


def rows_from_file(path: Openable, name: str, encoding: str = "utf-8") -> Iterator[Row]:
    """Stream rows from a CSV, JSON Lines or JSON array file (format by extension; a ``.json`` file may
    also hold JSON Lines).

    ``encoding``: the file's text encoding ("utf-8", with or without a BOM; "gb18030" reads GBK
    exports). Bytes it cannot decode stop reading at their row: that row and the ones after it are
    not sent, the rows before it are, and the campaign's summary says where and why.
    """
    check_file_name(name)
    codec = text_encoding(encoding)
    source = _Source(name, encoding)
    lower = name.lower()
    with path.open("rb") as raw:
        # surrogateescape: reading never fails; undecodable bytes are found, and refused, at their row
        stream = io.TextIOWrapper(raw, encoding=codec, errors="surrogateescape", newline="")
        if lower.endswith(".csv"):
            yield from _rows_from_csv(stream, source)
        elif lower.endswith(".json"):
            yield from _rows_from_json(stream, source)
        else:
            readline = stream.readline
            yield from _rows_from_jsonl(iter(partial(readline, MAX_ROW_CHARS + 1), ""), readline, source)


def template_params(template_text: str | None) -> frozenset[str] | None:
    """Names of ``${name}`` placeholders in a juncdt template text, when the user gave the text."""
    return frozenset(_PLACEHOLDER.findall(template_text)) if template_text else None


class _BadParam(ValueError):
    """A param value no message can show; the text names the param, never its value."""


def _param_text(name: object, value: object) -> str:
    """A param value as the message shows it: text, or a number written out. An empty value, a bool
    (``True`` is no word), null, NaN, a list or an object is refused: ``str()`` would text ``None``."""
    if isinstance(value, str):
        if value:
            return value
        raise _BadParam(f"param {name!r} is empty")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return str(value)
        raise _BadParam(f"param {name!r} is empty ({value})")
    if value is None:
        raise _BadParam(f"param {name!r} is empty (null)")
    raise _BadParam(f"param {name!r} must be text or a number, not {type(value).__name__}")


def _param_texts(params: Mapping[Any, Any]) -> dict[str, str]:
    """Params as text (see ``_param_text``); raise ``_BadParam`` for the first that is not."""
    return {str(k): v if type(v) is str and v else _param_text(k, v) for k, v in params.items()}


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
        try:
            self.shared = _param_texts(shared_params or {})
        except _BadParam as exc:
            raise InvalidInputError(f"params: {phones.mask_in_text(str(exc))}") from None
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
        try:
            own = _param_texts(row.params)
        except _BadParam as exc:
            return None, phones.mask_in_text(str(exc))
        return self._check({**self.shared, **own})

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
        """One item per row. After a row that stops the input (its bytes cannot be decoded), every
        later row is refused with ``stop`` too: what follows cannot be trusted to be what was meant."""
        seen = self._seen
        stopped: str | None = None
        for row in rows:
            if stopped is not None:
                phone = row.phone
                masked = phones.mask(phone) if type(phone) is str and phone.isascii() else "<not read>"
                yield Refused(row.index, masked, stopped, stop=True)
                continue
            if row.problem:
                if row.stop:
                    stopped = row.problem
                yield Refused(row.index, "<unreadable>", row.problem, stop=row.stop)
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

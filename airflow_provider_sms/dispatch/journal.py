"""The send journal: what the sending process knows before the ledger's database does, written where a
crash of the task's processes cannot take it.

A batch is marked ``sending`` in the database before its request may start, and the engine marks a
few batches ahead of a free connection so that commit overlaps the requests in flight. Without more, a
crash would leave every marked batch unknown: in flight, answered with its outcome not yet committed,
or still waiting for a connection. The journal tells them apart. The sending process appends a line
before a request starts and when its answer comes; a ``write`` is in the operating system's page cache
when it returns, so it survives a SIGKILL or an OOM kill of every process of the task (not a crash
of the machine). The next try of the task instance reads it before it claims (``read_journal``, used
by ``LedgerStore.recover``): only the requests in flight at the crash stay unknown. A journal written
before the machine last booted may have lost lines; it is not read, and the batches it would have
settled stay ambiguous.

One file per try, ``<directory>/<key>.<token>.jsonl`` (``key`` names the campaign and the task instance,
``token`` the try: the ledger writes it into the rows the try marks). Each line is a JSON array:

- ``["journal", 1, boot_id, campaign, owner, token]``: the header;
- ``["M", phones]``: marked; the mark goes to the database only after this line is written;
- ``["S", phones]``: a request starts; it may leave only after this line is written;
- ``["N", phones]``: no try of this batch was delivered so far (an answer proved it); it will be tried again;
- ``["E", phones, status, code, message, gateway_id]``: the batch's outcome, as recorded in the ledger;
- ``["C", offset]``: every outcome written before byte ``offset`` is committed in the database.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_sms.dispatch.ledger import LedgerError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

VERSION = 1
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
CHECKPOINT_BYTES = 1 << 16  # a "C" line at most this often: recovery reads outcomes only since the last
MAX_OUTCOMES_KEPT = 256  # distinct outcomes whose JSON is kept for the next line


class JournalError(LedgerError):
    """The send journal could not be written: no request may start without its line."""


def boot_id() -> str | None:
    """This boot of the machine (Linux); None where it cannot be told, and no journal is kept there."""
    try:
        return BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def journal_key(campaign: str, owner: str) -> str:
    """A file-name-safe name for one task instance's journals in one campaign."""
    return hashlib.sha256(f"{campaign}\0{owner}".encode()).hexdigest()[:24]


def journal_paths(directory: str | Path, campaign: str, owner: str) -> list[Path]:
    """The journals earlier tries of this task instance left (none after a clean end)."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{journal_key(campaign, owner)}.*.jsonl"))


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_phones(phones: Sequence[str]) -> bytes:
    """Numbers as a JSON array. Cleaned numbers are digits, which JSON writes as they are: joining them
    costs a fraction of ``json.dumps`` (lines are written per request, before it may leave)."""
    if "".join(phones).isdigit():
        return b'["' + '","'.join(phones).encode() + b'"]'
    return _json(list(phones)).encode()


class SendJournal:
    """Appends a try's lines; ``started`` writes at once, the other lines go out with the next write.

    Every line is in the file before what depends on it happens: ``flush`` before the marks go to the
    database (``M``), ``started`` before the request (``S``, and the outcomes before it: a request
    starts only once the answers that freed its connection are in the file)."""

    def __init__(self, directory: str | Path, campaign: str, owner: str, token: str, boot: str) -> None:
        folder = Path(directory)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.path = folder / f"{journal_key(campaign, owner)}.{token}.jsonl"
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise JournalError(f"the send journal could not be created in {folder}: {exc}") from exc
        self._buffer = bytearray()
        self._written = 0
        self._checkpoint = 0
        self._outcomes: dict[tuple[str, ...], bytes] = {}  # an outcome's JSON, by its values: most repeat
        self._append(_json(["journal", VERSION, boot, campaign, owner, token]))
        self.flush()

    @property
    def position(self) -> int:
        """The byte offset the next line starts at (written or not yet)."""
        return self._written + len(self._buffer)

    def _append(self, line: str) -> None:
        self._buffer += line.encode()
        self._buffer += b"\n"

    def marked(self, phones: Sequence[str]) -> int:
        """Note a mark (written by the next ``flush``); returns the position before it, for ``committed``."""
        position = self.position
        self._buffer += b'["M",%b]\n' % _json_phones(phones)
        return position

    def started(self, phones: Sequence[str]) -> None:
        self._buffer += b'["S",%b]\n' % _json_phones(phones)
        self.flush()

    def undelivered(self, phones: Sequence[str]) -> None:
        self._buffer += b'["N",%b]\n' % _json_phones(phones)

    def ended(self, phones: Sequence[str], values: tuple[str, ...]) -> None:
        outcome = self._outcomes.get(values)
        if outcome is None:
            outcome = _json(list(values))[1:-1].encode()
            if len(self._outcomes) < MAX_OUTCOMES_KEPT:
                self._outcomes[values] = outcome
        self._buffer += b'["E",%b,%b]\n' % (_json_phones(phones), outcome)

    def committed(self, position: int) -> None:
        """Outcomes written before ``position`` are in the database (noted at most every 64 KiB)."""
        if position - self._checkpoint >= CHECKPOINT_BYTES:
            self._checkpoint = position
            self._append(f'["C",{position}]')

    def flush(self) -> None:
        try:
            while self._buffer:
                written = os.write(self._fd, self._buffer)
                del self._buffer[:written]
                self._written += written
        except OSError as exc:
            raise JournalError(f"the send journal {self.path.name} could not be written: {exc}") from exc

    def close(self, *, remove: bool) -> None:
        """Close the file; ``remove`` once every outcome is committed in the database (a clean end)."""
        try:
            self.flush()
        finally:
            os.close(self._fd)
        if remove:
            self.path.unlink(missing_ok=True)


@dataclass
class Recovered:
    """What a dead try's journal says of the numbers it marked: their outcomes (those not known to be
    committed), and how far the others got: ``"M"`` marked only, ``"S"`` may have been delivered,
    ``"N"`` not delivered."""

    token: str
    outcomes: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)


def _lines(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    """(offset, parsed line); a last line without its newline is dropped (the write that was cut
    short by the crash: what depended on it never happened). Any other bad line: ValueError."""
    start = 0
    while (end := data.find(b"\n", start)) != -1:
        line = json.loads(data[start:end])
        if not isinstance(line, list) or not line:
            raise ValueError(f"not a journal line at byte {start}")
        yield start, line
        start = end + 1


def read_journal(path: Path, campaign: str, owner: str) -> Recovered | None:
    """The journal at ``path``, or None when it cannot be trusted: written before the machine last
    booted (lines may be lost), for another campaign, or damaged other than at its very end."""
    boot = boot_id()
    try:
        lines = _lines(path.read_bytes())
        _, header = next(lines)
        if boot is None or header[:5] != ["journal", VERSION, boot, campaign, owner]:
            return None
        found = Recovered(token=str(header[5]))
        ended: deque[tuple[int, list[str]]] = deque()  # outcomes since the last "C", in file order
        for offset, (kind, *rest) in lines:
            if kind == "M":
                for phone in rest[0]:
                    found.states.setdefault(phone, "M")  # a retry's mark keeps what its last try did
            elif kind in ("S", "N"):
                found.states.update(dict.fromkeys(rest[0], kind))
            elif kind == "E":
                values = (str(rest[1]), str(rest[2]), str(rest[3]), str(rest[4]))
                for phone in rest[0]:
                    found.states.pop(phone, None)
                    found.outcomes[phone] = values
                ended.append((offset, rest[0]))
            elif kind == "C":
                while ended and ended[0][0] < rest[0]:
                    for phone in ended.popleft()[1]:
                        found.outcomes.pop(phone, None)
            else:
                raise ValueError(f"unknown journal line {kind!r}")
    except (OSError, ValueError, StopIteration, IndexError, TypeError):
        return None
    return found

"""ihuyi MMS templates: a zip of frames and one SMIL layout (docs/gateways.md, "The MMS template zip").

Build one from a ready zip, a folder of frames or a list of frames, and validate it before any upload:
the gateway's rejections are terse, a local error naming the offending file is not.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias
from xml.sax.saxutils import quoteattr

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from airflow_provider_sms.errors import InvalidInputError

MmsErrorKind: TypeAlias = Literal[
    "not_zip", "bad_name", "media_type", "no_smil", "many_smil", "bad_smil",
    "missing_frame", "too_large", "empty", "bad_frame",
]  # fmt: skip

DEFAULT_MAX_BYTES = 300 * 1024
"""Carriers reject large MMS; every function takes ``max_bytes`` to change it."""

IMAGE_TYPES = frozenset({".jpg", ".jpeg", ".gif", ".png"})
AUDIO_TYPES = frozenset({".mid", ".midi", ".amr", ".mp3", ".wav"})
ALLOWED_TYPES = IMAGE_TYPES | AUDIO_TYPES | {".txt", ".smil"}
SMIL_NAME = "layout.smil"

_MAGIC = {".jpg": b"\xff\xd8", ".jpeg": b"\xff\xd8", ".png": b"\x89PNG", ".gif": b"GIF8"}
_KIND_NAMES = {b"\xff\xd8": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF"}
# Fixed timestamp and attributes: the same frames give the same bytes (cacheable, diffable uploads).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_DUR = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*")
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError, EOFError)


class MmsPackageError(InvalidInputError):
    """A template package refused before upload; ``kind`` says what is wrong, ``filename`` where."""

    def __init__(self, kind: MmsErrorKind, detail: str, filename: str | None = None) -> None:
        super().__init__(f"'{filename}': {detail}" if filename else detail)
        self.kind = kind
        self.detail = detail
        self.filename = filename


ImageSource: TypeAlias = "str | os.PathLike[str] | bytes"


@dataclass(frozen=True)
class Frame:
    """One slide: an image and/or a text shown for ``seconds``.

    ``image`` is a path or the image bytes; bytes need ``image_name`` since only the name gives the type.
    An empty or blank ``text`` counts as no text (spreadsheets give "" for an empty cell).
    """

    image: ImageSource | None = None
    text: str | None = None
    seconds: int = 5
    image_name: str | None = None

    def __post_init__(self) -> None:
        name = self.image_label
        if self.image is not None and not isinstance(self.image, (str, bytes, os.PathLike)):
            raise MmsPackageError("bad_frame", f"image must be a path or bytes, not {type(self.image)}")
        if self.text is not None and not isinstance(self.text, str):
            raise MmsPackageError("bad_frame", f"text must be a str, not {type(self.text).__name__}", name)
        if self.image is None and not self.has_text:
            raise MmsPackageError("bad_frame", "a frame needs an image or a text")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int) or not 1 <= self.seconds <= 60:
            raise MmsPackageError(
                "bad_frame", f"seconds must be an int from 1 to 60, not {self.seconds!r}", name
            )
        if isinstance(self.image, bytes) and not self.image_name:
            raise MmsPackageError(
                "bad_frame", "image bytes need an image_name (its extension gives the type)"
            )
        if name is not None and _ext(name) not in IMAGE_TYPES:
            allowed = ", ".join(sorted(IMAGE_TYPES))
            raise MmsPackageError("media_type", f"a frame image must be one of {allowed}", name)

    @property
    def has_text(self) -> bool:
        return bool(self.text and self.text.strip())

    @property
    def image_label(self) -> str | None:
        """The name that gives the image its type: ``image_name``, else the path."""
        if self.image_name:
            return self.image_name
        if isinstance(self.image, (str, os.PathLike)):
            return os.fspath(self.image)
        return None


FrameLike: TypeAlias = "Frame | tuple[Any, ...] | Mapping[str, Any]"
# Sequence for typing (a list[Frame] must type-check); at run time a list or a tuple.
PackageSource: TypeAlias = "bytes | str | os.PathLike[str] | Sequence[FrameLike]"


@dataclass(frozen=True)
class PackageInfo:
    """What a valid package holds: ``frames`` counts the ``<par>`` of its SMIL."""

    size: int
    smil_name: str
    frames: int
    files: tuple[str, ...]
    total_seconds: int


def _ext(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _check_name(name: str, seen: set[str]) -> None:
    if "\\" in name:
        raise MmsPackageError("bad_name", "backslash in a file name", name)
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise MmsPackageError("bad_name", "absolute path in the zip", name)
    if ".." in name.split("/"):
        raise MmsPackageError("bad_name", "'..' in a file name", name)
    if "/" in name or not name:
        raise MmsPackageError("bad_name", "folders are not allowed in the zip, only file names", name)
    if name.casefold() in seen:
        raise MmsPackageError("bad_name", "duplicate file name in the zip", name)
    seen.add(name.casefold())
    if _ext(name) not in ALLOWED_TYPES:
        allowed = ", ".join(sorted(ALLOWED_TYPES))
        raise MmsPackageError("media_type", f"media type not allowed (allowed: {allowed})", name)


def _millis(par: Any, smil_name: str) -> int:
    """Duration of one ``<par>`` in ms (``5s``, ``5000ms``, ``5``); a missing ``dur`` counts 0."""
    dur = par.get("dur")
    if dur is None:
        return 0
    match = _DUR.fullmatch(dur)
    if not match:
        raise MmsPackageError("bad_smil", f"unreadable <par dur={dur!r}>", smil_name)
    return round(float(match.group(1)) * (1 if match.group(2) == "ms" else 1000))


def _check_content(name: str, data: bytes) -> None:
    ext = _ext(name)
    if ext in _MAGIC and not data.startswith(_MAGIC[ext]):
        actual = next((k for m, k in _KIND_NAMES.items() if data.startswith(m)), "not an image")
        raise MmsPackageError("bad_frame", f"content does not match its extension {ext} ({actual})", name)
    if ext == ".txt":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MmsPackageError("bad_frame", f"text is not UTF-8 (byte {exc.start})", name) from None


def validate_package(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> PackageInfo:
    """Check ``data`` is a template the gateway will take; raise :class:`MmsPackageError` otherwise.

    Sizes come from the zip directory and are checked before anything is decompressed (zip bombs).
    """
    if len(data) > max_bytes:
        raise MmsPackageError("too_large", f"the zip is {len(data)} bytes, over the {max_bytes}-byte limit")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise MmsPackageError("not_zip", f"not a zip file ({exc})") from None
    with archive:
        infos = archive.infolist()
        if not infos:
            raise MmsPackageError("empty", "the zip holds no files")
        seen: set[str] = set()
        total = 0
        for info in infos:
            _check_name(info.filename, seen)
            total += info.file_size
            if info.file_size > max_bytes:
                detail = f"{info.file_size} bytes uncompressed, over the {max_bytes}-byte limit"
                raise MmsPackageError("too_large", detail, info.filename)
        if total > 4 * max_bytes:
            biggest = max(infos, key=lambda i: i.file_size).filename
            raise MmsPackageError(
                "too_large", f"{total} bytes uncompressed in all, over {4 * max_bytes}", biggest
            )
        names = tuple(info.filename for info in infos)
        smils = [n for n in names if _ext(n) == ".smil"]
        if not smils:
            raise MmsPackageError("no_smil", f"no .smil layout in the zip (files: {', '.join(names)})")
        if len(smils) > 1:
            raise MmsPackageError("many_smil", f"more than one .smil layout: {', '.join(smils)}", smils[1])
        contents: dict[str, bytes] = {}
        for info in infos:
            try:
                with archive.open(info) as member:
                    contents[info.filename] = member.read(max_bytes + 1)
            except _MEMBER_ERRORS as exc:  # CRC mismatch, truncated data, encryption, odd compression
                raise MmsPackageError("bad_frame", f"unreadable zip member ({exc})", info.filename) from None
    smil_name = smils[0]
    try:
        root = SafeET.fromstring(contents[smil_name], forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MmsPackageError(
            "bad_smil", f"DTD or entity refused ({type(exc).__name__})", smil_name
        ) from None
    except SafeET.ParseError as exc:
        raise MmsPackageError("bad_smil", f"not well-formed XML ({exc})", smil_name) from None
    if _local(root.tag) != "smil":
        raise MmsPackageError("bad_smil", f"root element is <{_local(root.tag)}>, not <smil>", smil_name)
    pars = [el for el in root.iter() if _local(el.tag) == "par"]
    if not pars:
        raise MmsPackageError("bad_smil", "no <par> frame in the layout", smil_name)
    for element in root.iter():
        src = element.get("src")
        if src is not None and src not in contents:
            raise MmsPackageError("missing_frame", f"{smil_name} references a file not in the zip", src)
    for name, content in contents.items():
        _check_content(name, content)
    total_ms = sum(_millis(par, smil_name) for par in pars)
    return PackageInfo(len(data), smil_name, len(pars), names, -(-total_ms // 1000))


def build_smil(frames: list[tuple[int, list[str]]]) -> str:
    """A standard layout: Image region on top, Text below, one ``<par dur="Ns">`` per frame."""
    body = []
    for seconds, files in frames:
        refs = []
        for name in files:
            ext = _ext(name)
            if ext in IMAGE_TYPES:
                refs.append(f'<img src={quoteattr(name)} region="Image"/>')
            elif ext == ".txt":
                refs.append(f'<text src={quoteattr(name)} region="Text"/>')
            else:
                refs.append(f"<audio src={quoteattr(name)}/>")
        body.append(f'    <par dur="{seconds}s">{"".join(refs)}</par>\n')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<smil>\n  <head>\n    <layout>\n'
        '      <root-layout width="320" height="480"/>\n'
        '      <region id="Image" left="0" top="0" width="100%" height="70%" fit="meet"/>\n'
        '      <region id="Text" left="0" top="70%" width="100%" height="30%" fit="scroll"/>\n'
        f"    </layout>\n  </head>\n  <body>\n{''.join(body)}  </body>\n</smil>\n"
    )


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # the default depends on the OS building the zip
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def _read(path: Path, max_bytes: int) -> bytes:
    if not path.is_file():
        raise MmsPackageError("bad_frame", "no such file", str(path))
    if path.stat().st_size > max_bytes:
        raise MmsPackageError(
            "too_large", f"{path.stat().st_size} bytes, over the {max_bytes}-byte limit", str(path)
        )
    return path.read_bytes()


def _natural(name: str) -> tuple[list[int | str], str]:
    """Sort ``2.jpg`` before ``10.jpg``: frame numbers are rarely zero-padded."""
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", name)], name


def _from_folder(folder: Path, max_bytes: int) -> list[tuple[str, bytes]]:
    entries = sorted(
        (p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: _natural(p.name)
    )
    members: list[tuple[str, bytes]] = []
    for entry in entries:
        if entry.is_dir():
            raise MmsPackageError("bad_name", "sub-folders are not allowed in a frames folder", entry.name)
        if _ext(entry.name) not in ALLOWED_TYPES:
            raise MmsPackageError("media_type", f"media type not allowed in {folder}", entry.name)
        members.append((entry.name, _read(entry, max_bytes)))
    if not members:
        raise MmsPackageError("empty", "no frame files in the folder", str(folder))
    if any(_ext(name) == ".smil" for name, _ in members):
        return members  # the user's own layout, used as is
    groups: dict[str, dict[str, str]] = {}
    for name, _ in members:
        ext = _ext(name)
        slot = "image" if ext in IMAGE_TYPES else "text" if ext == ".txt" else "audio"
        group = groups.setdefault(Path(name).stem, {})
        if slot in group:
            raise MmsPackageError("bad_frame", f"two {slot} files for one frame: {group[slot]}, {name}", name)
        group[slot] = name
    frames = [
        (5, list(files.values())) for _, files in sorted(groups.items(), key=lambda kv: _natural(kv[0]))
    ]
    return [(SMIL_NAME, build_smil(frames).encode()), *members]


def _coerce(item: object, index: int) -> Frame:
    try:
        if isinstance(item, Frame):
            return item
        if isinstance(item, tuple) and len(item) in (2, 3):
            return Frame(*item)
        if isinstance(item, Mapping):
            unknown = set(item) - {"image", "text", "seconds", "image_name"}
            if unknown:
                raise MmsPackageError("bad_frame", f"unknown frame keys {sorted(map(str, unknown))}")
            return Frame(**item)
    except MmsPackageError as exc:
        raise MmsPackageError(exc.kind, f"frame {index}: {exc.detail}", exc.filename) from None
    raise MmsPackageError("bad_frame", f"frame {index}: expected a Frame, (image, text, seconds) or a dict")


def _from_frames(items: Sequence[object], max_bytes: int) -> list[tuple[str, bytes]]:
    if not items:
        raise MmsPackageError("empty", "no frames given")
    members: list[tuple[str, bytes]] = []
    layout: list[tuple[int, list[str]]] = []
    for index, item in enumerate(items, 1):
        frame = _coerce(item, index)
        files = []
        if frame.image is not None:
            name = f"{index}{_ext(frame.image_label or '')}"
            data = frame.image if isinstance(frame.image, bytes) else _read(Path(frame.image), max_bytes)
            members.append((name, data))
            files.append(name)
        if frame.has_text:
            members.append((f"{index}.txt", (frame.text or "").encode("utf-8")))
            files.append(f"{index}.txt")
        layout.append((frame.seconds, files))
    return [(SMIL_NAME, build_smil(layout).encode()), *members]


def build_package(source: PackageSource, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Return a validated template zip from a ready zip (bytes or path), a folder, or a list of frames.

    The SMIL is generated unless the source has one; the zip is deterministic (fixed timestamps).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (list, tuple)):
        data = _zip(_from_frames(source, max_bytes))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            data = _zip(_from_folder(path, max_bytes))
        elif path.is_file() and path.suffix.lower() == ".zip":
            data = _read(path, max_bytes)
        else:
            raise MmsPackageError("not_zip", "neither a .zip file nor a folder of frames", str(path))
    else:
        raise TypeError(f"cannot build an MMS package from {type(source).__name__}")
    validate_package(data, max_bytes=max_bytes)
    return data

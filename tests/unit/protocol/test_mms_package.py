"""MMS template packages: build from every source form, validate, refuse bad zips naming the file."""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path

import pytest
from defusedxml import ElementTree as SafeET

from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.protocol.mms_package import (
    DEFAULT_MAX_BYTES,
    SMIL_NAME,
    Frame,
    FrameLike,
    MmsPackageError,
    PackageInfo,
    build_package,
    validate_package,
)
from tests.helpers import raises

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15"
    b"\xc4\x89\x00\x00\x00\rIDATx\x9cc\x00\x01\x00\x00\x05\x00\x01\r\n-\xb4\x00\x00\x00\x00IEND\xaeB`\x82"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"

SMIL = (
    '<smil><head><layout><region id="Image"/><region id="Text"/></layout></head><body>'
    '<par dur="5s"><img src="1.gif" region="Image"/><text src="1.txt" region="Text"/></par>'
    '<par dur="2500ms"><img src="2.png" region="Image"/></par>'
    "</body></smil>"
)


def make_zip(*members: tuple[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names warn
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in members:
                archive.writestr(name, content)
    return buffer.getvalue()


def good_members(smil: str = SMIL) -> list[tuple[str, bytes | str]]:
    return [("1.gif", GIF), ("1.txt", "你好"), ("2.png", PNG), ("t.smil", smil)]


def zip_contents(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def smil_refs(data: bytes) -> list[tuple[str, list[str]]]:
    """``[(dur, [src, ...]), ...]`` of the package's SMIL, in order."""
    contents = zip_contents(data)
    root = SafeET.fromstring(contents[next(n for n in contents if n.endswith(".smil"))])
    return [(par.get("dur"), [el.get("src") for el in par]) for par in root.iter("par")]


def refused(kind: str, data: bytes, filename: str | None = None, **kwargs: int) -> MmsPackageError:
    with raises(MmsPackageError) as info:
        validate_package(data, **kwargs)
    assert info.value.kind == kind, str(info.value)
    assert info.value.filename == filename
    if filename:
        assert filename in str(info.value)
    return info.value


# --- building -------------------------------------------------------------------------------------


def test_ready_zip_bytes_and_path(tmp_path: Path) -> None:
    data = make_zip(*good_members())
    assert build_package(data) == data
    (tmp_path / "t.zip").write_bytes(data)
    assert build_package(tmp_path / "t.zip") == data
    assert build_package(str(tmp_path / "t.zip")) == data
    info = validate_package(data)
    assert info == PackageInfo(len(data), "t.smil", 2, ("1.gif", "1.txt", "2.png", "t.smil"), 8)


def test_frames_in_every_form(tmp_path: Path) -> None:
    (tmp_path / "photo.JPG").write_bytes(JPEG)
    frames: list[FrameLike] = [
        Frame(image=GIF, image_name="a.gif", text="第一帧", seconds=3),
        (tmp_path / "photo.JPG", None, 4),
        {"image": PNG, "image_name": "x.png"},
        (None, "only text"),
        Frame(image=str(tmp_path / "photo.JPG"), text="  "),  # blank text is no text
    ]
    data = build_package(frames)
    contents = zip_contents(data)
    assert list(contents) == [SMIL_NAME, "1.gif", "1.txt", "2.jpg", "3.png", "4.txt", "5.jpg"]
    assert contents["1.txt"].decode("utf-8") == "第一帧"
    assert contents["2.jpg"] == JPEG
    assert smil_refs(data) == [
        ("3s", ["1.gif", "1.txt"]),
        ("4s", ["2.jpg"]),
        ("5s", ["3.png"]),
        ("5s", ["4.txt"]),
        ("5s", ["5.jpg"]),
    ]
    info = validate_package(data)
    assert (info.frames, info.total_seconds, info.smil_name) == (5, 22, SMIL_NAME)
    assert build_package(tuple(frames)) == data


def test_generated_smil_layout() -> None:
    data = build_package([Frame(text="hi")])
    root = SafeET.fromstring(zip_contents(data)[SMIL_NAME])
    assert root.tag == "smil"
    regions = [r.get("id") for r in root.iter("region")]
    assert regions == ["Image", "Text"]
    text = next(root.iter("text"))
    assert (text.get("src"), text.get("region")) == ("1.txt", "Text")


def test_folder_grouped_by_stem_in_natural_order(tmp_path: Path) -> None:
    (tmp_path / "01_intro.png").write_bytes(PNG)
    (tmp_path / "01_intro.txt").write_text("intro", encoding="utf-8")
    (tmp_path / "2.gif").write_bytes(GIF)
    (tmp_path / "10.txt").write_text("last", encoding="utf-8")
    (tmp_path / "10.amr").write_bytes(b"#!AMR\n")
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    data = build_package(tmp_path)
    assert set(zip_contents(data)) == {SMIL_NAME, "01_intro.png", "01_intro.txt", "2.gif", "10.txt", "10.amr"}
    assert smil_refs(data) == [
        ("5s", ["01_intro.png", "01_intro.txt"]),
        ("5s", ["2.gif"]),
        ("5s", ["10.amr", "10.txt"]),
    ]
    assert validate_package(data).total_seconds == 15


def test_folder_with_its_own_smil_is_used_as_is(tmp_path: Path) -> None:
    for name, content in good_members():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    data = build_package(str(tmp_path))
    contents = zip_contents(data)
    assert SMIL_NAME not in contents
    assert contents["t.smil"] == SMIL.encode()
    assert validate_package(data).frames == 2


def test_deterministic_output(tmp_path: Path) -> None:
    frames: list[FrameLike] = [Frame(image=GIF, image_name="a.gif", text="x"), (None, "y", 9)]
    assert build_package(frames) == build_package(list(frames))
    (tmp_path / "1.gif").write_bytes(GIF)
    (tmp_path / "1.txt").write_text("x", encoding="utf-8")
    first = build_package(tmp_path)
    os.utime(tmp_path / "1.gif", (1_000_000, 1_000_000))
    assert build_package(tmp_path) == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_namespaced_smil_and_error_base_class() -> None:
    smil = SMIL.replace("<smil>", '<smil xmlns="http://www.w3.org/2001/SMIL20/Language">')
    assert validate_package(make_zip(*good_members(smil))).frames == 2
    assert issubclass(MmsPackageError, InvalidInputError)
    assert DEFAULT_MAX_BYTES == 300 * 1024


# --- refusals -------------------------------------------------------------------------------------


def test_not_zip(tmp_path: Path) -> None:
    refused("not_zip", b"hello, not a zip")
    with raises(MmsPackageError) as info:
        build_package(tmp_path / "nope.jpg")
    assert info.value.kind == "not_zip"
    assert "nope.jpg" in str(info.value)


def test_empty() -> None:
    refused("empty", make_zip())
    with raises(MmsPackageError) as info:
        build_package([])
    assert info.value.kind == "empty"


def test_empty_folder(tmp_path: Path) -> None:
    with raises(MmsPackageError) as info:
        build_package(tmp_path)
    assert (info.value.kind, info.value.filename) == ("empty", str(tmp_path))


@pytest.mark.parametrize(
    "name", ["../evil.txt", "frames/1.gif", "/abs.gif", "C:evil.gif", "a\\b.gif", "frames/"]
)
def test_bad_names(name: str) -> None:
    err = refused("bad_name", make_zip(*good_members(), (name, "x")), name)
    assert str(err).startswith(f"'{name}': ")


def test_dotdot_message() -> None:
    err = refused("bad_name", make_zip(("../evil.txt", "x"), *good_members()), "../evil.txt")
    assert "'..'" in str(err)


def test_duplicate_names() -> None:
    refused("bad_name", make_zip(*good_members(), ("1.gif", GIF)), "1.gif")
    refused("bad_name", make_zip(*good_members(), ("1.GIF", GIF)), "1.GIF")


@pytest.mark.parametrize("name", ["run.exe", "page.html", "noext", "clip.mp4"])
def test_media_type(name: str) -> None:
    refused("media_type", make_zip(*good_members(), (name, b"x")), name)


def test_media_type_in_frames_and_folder(tmp_path: Path) -> None:
    with raises(MmsPackageError) as info:
        build_package([Frame(image=b"x", image_name="clip.mp4")])
    assert (info.value.kind, info.value.filename) == ("media_type", "clip.mp4")
    assert "frame 1" not in str(info.value)  # raised by Frame itself
    with raises(MmsPackageError) as info:
        build_package([(b"x", None, 5)])  # bytes without a name
    assert info.value.kind == "bad_frame"
    assert "frame 1" in str(info.value)
    (tmp_path / "1.gif").write_bytes(GIF)
    (tmp_path / "notes.docx").write_bytes(b"x")
    with raises(MmsPackageError) as info:
        build_package(tmp_path)
    assert (info.value.kind, info.value.filename) == ("media_type", "notes.docx")


def test_no_smil_and_many_smil() -> None:
    refused("no_smil", make_zip(("1.gif", GIF), ("1.txt", "x")))
    err = refused("many_smil", make_zip(*good_members(), ("other.smil", SMIL)), "other.smil")
    assert "t.smil" in str(err)


@pytest.mark.parametrize(
    ("smil", "words"),
    [
        ("<smil><body><par>", "not well-formed"),
        ("<html><body><par/></body></html>", "<html>"),
        ("<smil><head/><body/></smil>", "no <par>"),
        ('<smil><body><par dur="soon"><img src="1.gif"/></par></body></smil>', "dur"),
        (
            '<?xml version="1.0"?><!DOCTYPE smil [<!ENTITY x "1.gif">]>'
            '<smil><body><par><img src="&x;"/></par></body></smil>',
            "DTD",
        ),
        ('<!DOCTYPE smil SYSTEM "http://example.com/smil.dtd"><smil><body><par/></body></smil>', "DTD"),
    ],
)
def test_bad_smil(smil: str, words: str) -> None:
    err = refused("bad_smil", make_zip(*good_members(smil)), "t.smil")
    assert words in str(err)


def test_missing_frame() -> None:
    smil = SMIL.replace("2.png", "3.png")
    err = refused("missing_frame", make_zip(*good_members(smil)), "3.png")
    assert "t.smil" in str(err)


def test_zip_bomb_member_refused_before_decompressing(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_zip(*good_members(), ("bomb.txt", b"\0" * (2 * 1024 * 1024)))
    assert len(data) < 10_000  # tiny on the wire, 2 MB declared

    def no_decompress(*args: object, **kwargs: object) -> None:
        raise AssertionError("decompressed before checking sizes")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_decompress)
    err = refused("too_large", data, "bomb.txt")
    assert str(2 * 1024 * 1024) in str(err)


def test_total_uncompressed_limit() -> None:
    members = [(f"{i}.txt", b"a" * 1400) for i in range(3, 8)]
    data = make_zip(*good_members(), *members)
    assert len(data) < 1500
    refused("too_large", data, "3.txt", max_bytes=1500)  # 5 * 1400 bytes and more > 4 * 1500


def test_zip_over_max_bytes() -> None:
    data = make_zip(*good_members())
    err = refused("too_large", data, None, max_bytes=len(data) - 1)
    assert str(len(data)) in str(err)
    assert validate_package(data, max_bytes=len(data)).size == len(data)


def test_too_large_frame_file(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(PNG + b"\0" * 2000)
    with raises(MmsPackageError) as info:
        build_package([(tmp_path / "big.png", "x", 5)], max_bytes=1000)
    assert (info.value.kind, info.value.filename) == ("too_large", str(tmp_path / "big.png"))
    with raises(MmsPackageError) as info:
        build_package([Frame(image=PNG + bytes(range(256)) * 20, image_name="x.png")], max_bytes=1000)
    assert info.value.kind == "too_large"


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("1.gif", PNG, "PNG"),
        ("2.png", JPEG, "JPEG"),
        ("2.png", b"", "not an image"),
        ("1.txt", "你好".encode("gbk"), "UTF-8"),
    ],
)
def test_bad_frame_content(name: str, content: bytes, words: str) -> None:
    members = [(n, content if n == name else c) for n, c in good_members()]
    err = refused("bad_frame", make_zip(*members), name)
    assert words in str(err)


def test_jpeg_named_gif_in_frames() -> None:
    with raises(MmsPackageError) as info:
        build_package([Frame(image=JPEG, image_name="pic.gif")])
    assert info.value.kind == "bad_frame"
    assert info.value.filename == "1.gif"


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"text": "   "},
        {"text": "x", "seconds": 0},
        {"text": "x", "seconds": 61},
        {"text": "x", "seconds": True},
    ],
)
def test_frame_validation(kwargs: dict[str, object]) -> None:
    with raises(MmsPackageError) as info:
        Frame(**kwargs)  # type: ignore[arg-type]
    assert info.value.kind == "bad_frame"


def test_bad_frame_items(tmp_path: Path) -> None:
    for item in ["1.gif", (GIF,), {"image": GIF, "image_name": "a.gif", "colour": "red"}]:
        with raises(MmsPackageError) as info:
            build_package([Frame(text="ok"), item])  # type: ignore[list-item]
        assert info.value.kind == "bad_frame"
        assert "frame 2" in str(info.value)
    missing = tmp_path / "gone.png"
    with raises(MmsPackageError) as info:
        build_package([(missing, None, 5)])
    assert (info.value.kind, info.value.filename) == ("bad_frame", str(missing))


def test_two_images_for_one_frame_in_folder(tmp_path: Path) -> None:
    (tmp_path / "1.gif").write_bytes(GIF)
    (tmp_path / "1.png").write_bytes(PNG)
    with raises(MmsPackageError) as info:
        build_package(tmp_path)
    assert (info.value.kind, info.value.filename) == ("bad_frame", "1.png")
    assert "1.gif" in str(info.value)


def test_subfolder_refused(tmp_path: Path) -> None:
    (tmp_path / "1.gif").write_bytes(GIF)
    (tmp_path / "more").mkdir()
    with raises(MmsPackageError) as info:
        build_package(tmp_path)
    assert (info.value.kind, info.value.filename) == ("bad_name", "more")

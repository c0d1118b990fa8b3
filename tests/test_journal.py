"""The send journal: what a try writes before its requests leave, and what the next try may trust of it.

A real file in a temporary folder; the machine's boot id is replaced where a test needs another boot."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from airflow_provider_sms.dispatch import journal
from airflow_provider_sms.dispatch.journal import (
    JournalError,
    SendJournal,
    boot_id,
    journal_paths,
    read_journal,
)

CAMPAIGN, OWNER = "promo", "dag/task/run/-1"
ACCEPTED = ("accepted", "0", "ok", "G-1")
FAILED = ("failed", "5xx", "HTTP 503", "")

pytestmark = pytest.mark.skipif(boot_id() is None, reason="no boot id here: no journal is kept")


def new_journal(folder: Path, token: str = "t1") -> SendJournal:
    boot = boot_id()
    assert boot is not None
    return SendJournal(folder, CAMPAIGN, OWNER, token, boot)


def test_a_try_s_lines_tell_the_next_try_how_far_each_number_got(tmp_path: Path) -> None:
    log = new_journal(tmp_path)
    log.marked(["1", "2", "3", "4", "5"])
    log.started(["1"])  # in flight at the crash
    log.started(["2"])
    log.undelivered(["2"])  # answered: not delivered, waiting to be tried again
    log.started(["3"])
    log.ended(["3"], ACCEPTED)  # answered: its outcome
    log.started(["4"])
    log.ended(["4"], FAILED)
    log.marked(["2"])  # the retry of 2 is marked again: it stays "not delivered" until it starts
    log.flush()  # 5: marked ahead of a free connection, never started
    found = read_journal(log.path, CAMPAIGN, OWNER)
    assert found is not None
    assert found.token == "t1"
    assert found.states == {"1": "S", "2": "N", "5": "M"}
    assert found.outcomes == {"3": ACCEPTED, "4": FAILED}


def test_lines_go_to_the_file_before_what_depends_on_them(tmp_path: Path) -> None:
    log = new_journal(tmp_path)
    log.marked(["1"])
    log.ended(["9"], ACCEPTED)
    assert log.path.read_bytes().count(b"\n") == 1  # the header only: marks and outcomes wait...
    log.started(["1"])  # ...for the next request's start, which writes them first
    found = read_journal(log.path, CAMPAIGN, OWNER)
    assert found is not None and found.states == {"1": "S"} and found.outcomes == {"9": ACCEPTED}
    assert log.position == log.path.stat().st_size


def test_outcomes_committed_in_the_database_are_not_read_again(tmp_path: Path) -> None:
    log = new_journal(tmp_path)
    log.ended(["1"], ACCEPTED)
    log.ended([f"{i}" for i in range(10, 10_000)], ACCEPTED)  # 90 KB of outcomes
    position = log.position
    log.ended(["2"], ACCEPTED)
    log.committed(position)  # all but "2" are in the database
    log.flush()
    found = read_journal(log.path, CAMPAIGN, OWNER)
    assert found is not None and found.outcomes == {"2": ACCEPTED}
    log.committed(log.position)  # noted at most every 64 KiB: "2" is read again, which is harmless
    log.flush()
    found = read_journal(log.path, CAMPAIGN, OWNER)
    assert found is not None and found.outcomes == {"2": ACCEPTED}


def test_a_line_cut_short_by_the_crash_is_dropped_any_other_damage_distrusts_the_file(
    tmp_path: Path,
) -> None:
    log = new_journal(tmp_path)
    log.marked(["1"])
    log.started(["1"])
    log.close(remove=False)
    whole = log.path.read_bytes()
    log.path.write_bytes(whole + b'["S",["2"')  # the write the crash cut: its request never left
    found = read_journal(log.path, CAMPAIGN, OWNER)
    assert found is not None and found.states == {"1": "S"}
    log.path.write_bytes(whole.replace(b'["S"', b'["S"x', 1))  # damage before the end: trust nothing
    assert read_journal(log.path, CAMPAIGN, OWNER) is None


def test_a_journal_from_another_boot_or_campaign_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = new_journal(tmp_path)
    log.started(["1"])
    assert read_journal(log.path, "another", OWNER) is None
    assert read_journal(log.path, CAMPAIGN, "dag/task/run/3") is None
    rebooted = tmp_path / "boot_id"
    rebooted.write_text("00000000-0000-0000-0000-000000000000\n")
    monkeypatch.setattr(journal, "BOOT_ID", rebooted)  # lines may have been lost with the page cache
    assert read_journal(log.path, CAMPAIGN, OWNER) is None


def test_one_private_file_per_try_removed_after_a_clean_end(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    first, second = new_journal(folder, "t1"), new_journal(folder, "t2")
    assert journal_paths(folder, CAMPAIGN, OWNER) == sorted([first.path, second.path])
    assert journal_paths(folder, CAMPAIGN, "other/owner") == []
    assert journal_paths(tmp_path / "none-yet", CAMPAIGN, OWNER) == []
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600  # numbers: for this user only
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with pytest.raises(JournalError):
        new_journal(folder, "t1")  # a try never writes into another's file
    first.close(remove=True)
    second.close(remove=False)
    assert journal_paths(folder, CAMPAIGN, OWNER) == [second.path]


def test_a_journal_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(JournalError, match="could not be created"):
        new_journal(blocked)  # a file where the folder should be

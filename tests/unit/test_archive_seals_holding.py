"""Finding the archived seals of a few entries reads only the blocks that hold them (decision 0036)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sesame.server import journal_archive
from sesame.server.journal_archive import JournalArchive
from tests.unit.test_journal_archive import feed
from tests.unit.test_journal_seal import Signer


def test_the_seals_holding_some_entries_come_from_their_segments_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten one-entry blocks in five segments; the entries 3 and 8: blocks 3 and 8, and the other blocks are
    not read (a segment whose lines are made unreadable changes nothing)."""
    monkeypatch.setattr(journal_archive, "SEGMENT_BLOCKS", 2)
    signer, archive = Signer(), JournalArchive(tmp_path)
    previous = None
    for n in range(1, 11):
        seal = signer.seal(previous, feed(n, 1))
        archive.append(seal, feed(n, 1))
        previous = seal.block
    untouched = tmp_path / "segment-000000000005.jsonl"  # blocks 5 and 6
    untouched.write_text("not json\n" * len(untouched.read_text().splitlines()))
    found = archive.seals_holding(["8-0", "3-0"])
    assert [seal.block.number for seal in found] == [3, 8]
    assert archive.seals_holding(["11-0"]) == []
    assert [s.block.number for s in archive.seals_holding(["1-0", "10-0"])] == [1, 10]


def test_no_block_is_read_once_those_read_hold_more_leaves_than_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten blocks of three entries; at most 4 leaves: blocks 1 and 2 (6 leaves, past 4) and no other is read
    (the segments of blocks 3 to 10 made unreadable change nothing); the caller sees more than it allowed
    (decision 0145)."""
    monkeypatch.setattr(journal_archive, "SEGMENT_BLOCKS", 2)
    signer, archive = Signer(), JournalArchive(tmp_path)
    previous = None
    for n in range(1, 11):
        entries = feed(3 * n - 2, 3)
        seal = signer.seal(previous, entries)
        archive.append(seal, entries)
        previous = seal.block
    every = [f"{n}-0" for n in range(1, 31)]
    assert len(archive.seals_holding(every)) == 10
    for segment in sorted(tmp_path.glob("segment-*.jsonl"))[1:]:
        segment.write_text("not json\n" * len(segment.read_text().splitlines()))
    found = archive.seals_holding(every, most_leaves=4)
    assert [seal.block.number for seal in found] == [1, 2]
    assert sum(len(seal.leaves) for seal in found) == 6

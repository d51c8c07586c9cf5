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

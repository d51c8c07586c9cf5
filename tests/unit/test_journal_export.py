"""The export's progress bar and its resume point (decision 0035); the export itself runs in
tests/integration/test_journal_export.py over real Redis and SoftHSM."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sesame.server.domain.journal_seal import FeedEntry, Seal
from sesame.server.journal_archive import ArchivedBlock, JournalArchive, MalformedArchive
from sesame.server.journal_export import (
    Progress,
    blocks_after,
    entry_line,
    read_export,
    resume_point,
    seal_line,
)
from sesame.server.json_once import RepeatedKey
from tests.unit.test_journal_seal import Signer
from tests.unit.test_journal_verify import an_archive


class Terminal(io.StringIO):
    """Standard error as a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_large_export_draws_a_bar_on_a_terminal() -> None:
    """On a terminal, an export of LARGE blocks or more redraws one line and ends it."""
    shown = Terminal()
    progress = Progress(shown, Progress.LARGE)
    for done in range(1, Progress.LARGE + 1):
        progress.step(done)
    progress.close()
    text = shown.getvalue()
    assert text.startswith("\r[")
    assert text.endswith(f"] {Progress.LARGE}/{Progress.LARGE} blocks\n")


def test_no_bar_off_a_terminal_or_for_a_small_export() -> None:
    """Piped to a file, or fewer than LARGE blocks: standard error stays silent."""
    for stream, total in ((io.StringIO(), 10 * Progress.LARGE), (Terminal(), Progress.LARGE - 1)):
        progress = Progress(stream, total)
        for done in range(1, total + 1):
            progress.step(done)
        progress.close()
        assert stream.getvalue() == ""


def test_resume_point_cuts_the_block_an_interruption_left_without_its_seal(tmp_path: Path) -> None:
    """Two whole blocks and half of a third: the cursor is 2, and the file ends after block 2's seal."""
    blocks = an_archive(Signer(), blocks=3)
    whole = "".join(
        [
            line
            for b in blocks
            for line in [*(entry_line(b.seal.block.number, e) for e in b.entries), seal_line(b.seal)]
        ]
    )
    two = whole[: whole.index(seal_line(blocks[1].seal)) + len(seal_line(blocks[1].seal))]
    cut = tmp_path / "export.jsonl"
    cut.write_text(whole[: len(two) + len(entry_line(3, blocks[2].entries[0])) + 7], encoding="utf-8")
    assert resume_point(cut) == 2
    assert cut.read_text(encoding="utf-8") == two
    assert [b.seal for b in read_export(two.splitlines())] == [b.seal for b in blocks[:2]]
    assert resume_point(tmp_path / "none.jsonl") == 0


class Draining:
    """Redis while the sealer drains: by the time the export asks for the live seals, blocks 3 and 4 went to
    the archive and left Redis, which holds block 5 only."""

    def __init__(self, archive: JournalArchive, blocks: list[ArchivedBlock]) -> None:
        self._archive = archive
        self._blocks = blocks

    async def seals_from(self, first_id: str) -> list[Seal]:
        for drained in self._blocks[2:4]:
            self._archive.append(drained.seal, drained.entries)
        return [self._blocks[4].seal]

    async def sealed_entries(self, seal: Seal) -> list[FeedEntry]:
        return list(self._blocks[4].entries)


async def test_blocks_archived_while_the_export_reads_are_taken_from_the_archive(tmp_path: Path) -> None:
    """The archive read (blocks 1-2), then Redis (block 5 only, 3-4 drained meanwhile): 1 to 5, in order."""
    blocks = an_archive(Signer(), blocks=5)
    archive = JournalArchive(tmp_path / "archive")
    for block in blocks[:2]:
        archive.append(block.seal, block.entries)
    exported = [b async for b in blocks_after(0, archive, Draining(archive, blocks))]
    assert [b.seal for b in exported] == [b.seal for b in blocks]
    assert [b.entries for b in exported] == [b.entries for b in blocks]


def _export_text(blocks: list[ArchivedBlock]) -> str:
    return "".join(
        line
        for b in blocks
        for line in [*(entry_line(b.seal.block.number, e) for e in b.entries), seal_line(b.seal)]
    )


def test_entry_lines_after_the_last_seal_are_refused() -> None:
    """Found from outside (AL3): a forged entry line appended after the last seal, or the last seal line
    cut, verified without a word about the lines no seal covers."""
    blocks = an_archive(Signer(), blocks=2)
    whole = _export_text(blocks)
    forged = whole + entry_line(3, blocks[1].entries[0])
    cut = whole[: whole.index(seal_line(blocks[1].seal))]
    for text, lines in ((forged, 1), (cut, len(blocks[1].entries))):
        with pytest.raises(ValueError, match=f"{lines} entry line\\(s\\) after the last seal line"):
            list(read_export(text.splitlines()))
    assert [b.seal for b in read_export(whole.splitlines())] == [b.seal for b in blocks]


def test_a_line_naming_a_key_twice_is_refused_in_an_export_and_in_the_archive(tmp_path: Path) -> None:
    """Found from outside (AL5): bundles refused a repeated key, exports and archive segments took the last
    value, where another reader takes the first (a forged address read beside the sealed one)."""
    blocks = an_archive(Signer(), blocks=2)
    whole = _export_text(blocks)
    doubled = whole.replace('"event": ', '"event": "forged", "event": ', 1)
    if doubled == whole:
        doubled = whole.replace('"event":', '"event":"forged","event":', 1)
    assert doubled != whole
    with pytest.raises(RepeatedKey):
        list(read_export(doubled.splitlines()))
    archive = JournalArchive(tmp_path / "archive")
    for block in blocks:
        archive.append(block.seal, block.entries)
    [segment] = sorted((tmp_path / "archive").glob("segment-*.jsonl"))
    text = segment.read_text(encoding="utf-8")
    edited = text.replace('"event":', '"event":"forged","event":', 1).replace(
        '"event": ', '"event": "forged", "event": ', 1
    )
    assert edited != text
    segment.write_text(edited, encoding="utf-8")
    with pytest.raises(MalformedArchive, match="RepeatedKey"):
        list(JournalArchive(tmp_path / "archive").blocks())

"""The export's progress bar and its resume point (decision 0035); the export itself runs in
tests/integration/test_journal_export.py over real Redis and SoftHSM."""

from __future__ import annotations

import io
from pathlib import Path

from sesame.server.journal_export import Progress, entry_line, read_export, resume_point, seal_line
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

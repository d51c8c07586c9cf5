"""The ERROR of a refused journal (`proofs.Disagreements`): said once a minute per reason and challenge, and
at most a hundred a minute per reason whatever the challenges (outside audits AV4, AW5, AX1)."""

from __future__ import annotations

import logging

import pytest

from sesame.server.domain.errors import JournalDisagrees
from sesame.server.domain.proofs import Disagreements
from tests.unit.test_log_quota import Ticks

REFUSAL = JournalDisagrees("the proof kept does not verify under Sésame's proof keys")


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    records = caplog.records
    return [r.getMessage() for r in records if r.name == "sesame.proofs" and r.levelno >= logging.ERROR]


def test_journals_forged_under_many_ids_write_at_most_the_ceiling_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """AX1: one line per challenge id, and journals forged under 10,000 made-up ids (more than the ids the
    quota remembers) wrote a line a call. The ceiling holds them to 100 a minute; the next minute's first line
    counts those held back."""
    ticks = Ticks()
    said = Disagreements(most=100, monotonic=ticks)
    caplog.set_level(logging.ERROR, "sesame.proofs")
    for n in range(2 * 5000):
        assert said.said(REFUSAL, f"forged-{n % 5000}") is REFUSAL
    assert len(_errors(caplog)) == 100
    caplog.clear()
    ticks.now += 60
    said.said(REFUSAL, "forged-0")
    (line,) = _errors(caplog)
    assert line.endswith("; 9900 more such refusals of other challenges were not logged in the last 60 s")


def test_a_decoy_holds_no_other_challenge_back(caplog: pytest.LogCaptureFixture) -> None:
    """AW5: the target's first refusal is said while the decoy's repeats are held back."""
    said = Disagreements(monotonic=Ticks())
    caplog.set_level(logging.ERROR, "sesame.proofs")
    for _ in range(5):
        said.said(REFUSAL, "decoy")
    said.said(REFUSAL, "target")
    assert len(_errors(caplog)) == 2

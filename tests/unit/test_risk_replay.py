"""`sesame risk replay`: the scenario files load, replay to the decisions they expect, and the rates print."""

from __future__ import annotations

from pathlib import Path

import pytest

from sesame.server.cli import main
from sesame.server.domain.risk import RiskDecision
from sesame.server.domain.risk_rules import default_rules
from sesame.server.risk_replay import ScenarioError, flagged, load, replay

SCENARIOS = sorted((Path(__file__).parents[1] / "risk_scenarios").glob("*.toml"))


def test_there_are_ten_benign_and_five_fraudulent_scenarios() -> None:
    """The issue's floor: at least ten ordinary histories and five frauds."""
    kinds = [load(path).fraud for path in SCENARIOS]
    assert kinds.count(False) >= 10
    assert kinds.count(True) >= 5


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda path: path.stem)
def test_each_scenario_gives_the_decisions_it_expects(path: Path) -> None:
    """Every `expect` holds; a fraud is held or denied somewhere, a benign history is never flagged."""
    scenario = load(path)
    decided = replay(scenario, default_rules())
    assert [(d.index, d.assessment.decision) for d in decided if not d.as_expected] == []
    if scenario.fraud:
        assert any(d.assessment.decision >= RiskDecision.HOLD for d in decided)
    else:
        assert not flagged(decided)


def test_the_command_prints_each_decision_and_the_false_positive_rate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 0 when every expectation holds; the rates are the last lines."""
    assert main(["risk", "replay", *map(str, SCENARIOS)]) == 0
    out = capsys.readouterr().out
    assert "HOLD  NEW_PAYEE" in out
    assert "frauds held or denied: 6/6" in out
    assert "false-positive rate (benign scenarios flagged): 0/10 = 0.0 %" in out


def test_an_unexpected_decision_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file expecting ALLOW where the rules HOLD: the line is marked, exit 1."""
    path = tmp_path / "wrong.toml"
    path.write_text(
        (SCENARIOS[0].parent / "fraud_judgment_2019.toml")
        .read_text(encoding="utf-8")
        .replace('"HOLD"', '"ALLOW"'),
        encoding="utf-8",
    )
    assert main(["risk", "replay", str(path)]) == 1
    assert "<-- expected ALLOW" in capsys.readouterr().out


def test_a_bad_scenario_is_refused_with_its_event(tmp_path: Path) -> None:
    """An unknown kind names the file and the event."""
    path = tmp_path / "bad.toml"
    path.write_text('[[events]]\nkind = "teleport"\n', encoding="utf-8")
    with pytest.raises(ScenarioError, match="event 1: kind must be one of"):
        load(path)
    assert main(["risk", "replay", str(path)]) == 2


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"\xff\xfe[[events]]\n", "can't decode"),
        (b"events = [1]\n", "event 1: kind must be"),
        (b'[[events]]\nkind = ["login"]\n', "event 1: kind must be"),
        (b'past = ["ordinary"]\n[[events]]\nkind = "login"\n', "past must be"),
        (b'[[events]]\nkind = "login"\nexpect = ["DENY"]\n', "event 1: expect must be"),
        (b'[[events]]\nkind = "login"\nafter = "99999999999d"\n', "event 1: after must be"),
        (b'[[events]]\nkind = "login"\nafter = "36601d"\n', "event 1: after must be at most"),
        (b'[[events]]\nkind = "login"\nafter = "30000d"\n' * 2, "span more than"),
        (b'[[events]]\nkind = "transfer"\npayee = "FR76"\namount = "abc"\n', "event 1: amount must be"),
        (b'[[events]]\nkind = "transfer"\npayee = "FR76"\namount = inf\n', "event 1: amount must be"),
        (b'[[events]]\nkind = "transfer"\npayee = "FR76"\namount = nan\n', "event 1: amount must be"),
        (b'[[events]]\nkind = "transfer"\npayee = "FR76"\namount = -10\n', "event 1: amount must be"),
        (b'[[events]]\nkind = "wrong_codes"\ncount = "x"\n', "event 1: count must be"),
        (b'[[events]]\nkind = "wrong_codes"\ncount = -5\n', "event 1: count must be"),
    ],
)
def test_a_value_of_the_wrong_type_or_size_is_refused_with_its_event(
    text: bytes, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 and one line naming the file and the event: each of these escaped as a traceback (exit 1, which
    reads as a decision not the one expected), or replayed a negative amount or count (decision 0105)."""
    path = tmp_path / "bad.toml"
    path.write_bytes(text)
    assert main(["risk", "replay", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"sesame: {path}")
    assert why in error

"""The risk settings: a bad rules file stops the boot with its line and reason; SIM swap is off unless set."""

from __future__ import annotations

from pathlib import Path

import pytest

from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError
from sesame.server.domain.risk_rules import default_rules

TOKEN = "t0k3n"  # noqa: S105 (a test value)


def test_by_default_the_default_rules_and_no_sim_swap() -> None:
    """Nothing set: the shipped rules, the SIM-swap signal off."""
    settings = Settings.from_env({})
    assert settings.risk.rules.version == default_rules().version
    assert settings.risk.sim_swap is None


def test_a_bad_rules_file_refuses_to_start_with_its_line_and_reason(tmp_path: Path) -> None:
    """An unknown signal on line 6: the boot error names the file, the line and why."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'version = "bank-1"\n\n[[rules]]\nid = "x"\ndescription = "A big transfer"\n'
        'when = [["amout", ">", 1]]\ndecision = "HOLD"\nreason = "BIG"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match=r"rules\.toml: line 6: unknown signal 'amout'"):
        Settings.from_env({"SESAME_RISK_RULES_FILE": str(rules)})


def test_a_missing_rules_file_refuses_to_start(tmp_path: Path) -> None:
    """A path that cannot be read is a boot error, never the defaults in silence."""
    with pytest.raises(ConfigurationError, match="SESAME_RISK_RULES_FILE cannot be read"):
        Settings.from_env({"SESAME_RISK_RULES_FILE": str(tmp_path / "missing.toml")})


def test_a_bank_rules_file_is_used(tmp_path: Path) -> None:
    """A good file replaces the defaults; its version names it."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'version = "bank-1"\n\n[[rules]]\nid = "x"\ndescription = "A big transfer"\n'
        'when = [["amount", ">", 1]]\ndecision = "HOLD"\nreason = "BIG"\n',
        encoding="utf-8",
    )
    settings = Settings.from_env({"SESAME_RISK_RULES_FILE": str(rules)})
    assert settings.risk.rules.version.startswith("bank-1+")


def test_the_sim_swap_api_needs_its_token(tmp_path: Path) -> None:
    """A URL without a token is a boot error; with one, the API is configured and the token hidden."""
    with pytest.raises(ConfigurationError, match="SESAME_SIM_SWAP_TOKEN"):
        Settings.from_env({"SESAME_SIM_SWAP_URL": "https://operator.example/sim-swap/v2"})
    settings = Settings.from_env(
        {"SESAME_SIM_SWAP_URL": "https://operator.example/sim-swap/v2", "SESAME_SIM_SWAP_TOKEN": TOKEN}
    )
    assert settings.risk.sim_swap is not None
    assert settings.risk.sim_swap.token == TOKEN
    assert TOKEN not in repr(settings)

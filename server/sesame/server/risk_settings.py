"""The risk settings: the rules file (checked at boot: a bad file stops the service with its line and
reason), how long the risk memory lasts, and the operator's SIM-swap API (off unless configured)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sesame.server.domain.risk import RuleSet
from sesame.server.domain.risk_rules import RulesFileError, default_rules, parse
from sesame.server.domain.risk_signals import RiskLimits
from sesame.server.env_reader import EnvReader, read_setting_file

_TOKEN = "SESAME_SIM_SWAP_TOKEN"  # noqa: S105 (the setting's name, not a token)


@dataclass(frozen=True, slots=True)
class SimSwapSettings:
    """The operator's CAMARA SIM Swap API; the token never shows in a repr."""

    url: str
    token: str = field(repr=False)
    timeout: timedelta = timedelta(milliseconds=500)
    max_age: timedelta = timedelta(hours=72)
    cache_for: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class RiskSettings:
    """The rules, the memory's bounds, and the SIM-swap API (None: off, the signal reads `off`)."""

    rules: RuleSet = field(default_factory=default_rules)
    limits: RiskLimits = field(default_factory=RiskLimits)
    sim_swap: SimSwapSettings | None = None


def read_risk(reader: EnvReader) -> RiskSettings:
    """SESAME_RISK_RULES_FILE, SESAME_RISK_MEMORY_DAYS and the SESAME_SIM_SWAP_* settings."""
    path = reader.optional("SESAME_RISK_RULES_FILE", "unset: the default rules (docs/risk.md)")
    rules = default_rules() if path is None else _rules(reader, Path(path))
    days = reader.integer("SESAME_RISK_MEMORY_DAYS", 180, 1, 800)
    url = reader.url("SESAME_SIM_SWAP_URL", "unset: no SIM-swap check (the signal reads off)")
    timeout_ms = reader.integer("SESAME_SIM_SWAP_TIMEOUT_MS", 500, 50, 5000)
    max_age = reader.integer("SESAME_SIM_SWAP_MAX_AGE_HOURS", 72, 1, 2400)
    cache = reader.integer("SESAME_SIM_SWAP_CACHE_SECONDS", 300, 0, 86400)
    reader.asked.setdefault(_TOKEN, f"required with SESAME_SIM_SWAP_URL (or {_TOKEN}_FILE)")
    sim_swap = None
    if url is not None:
        sim_swap = SimSwapSettings(
            url=url,
            token=reader.secret(_TOKEN),
            timeout=timedelta(milliseconds=timeout_ms),
            max_age=timedelta(hours=max_age),
            cache_for=timedelta(seconds=cache),
        )
    return RiskSettings(rules=rules, limits=RiskLimits(retention=timedelta(days=days)), sim_swap=sim_swap)


def _rules(reader: EnvReader, path: Path) -> RuleSet:
    try:
        return parse(read_setting_file(str(path)).decode("utf-8"))
    except OSError as exc:
        reader.problems.append(f"SESAME_RISK_RULES_FILE cannot be read ({exc.strerror})")
    except UnicodeDecodeError:
        reader.problems.append("SESAME_RISK_RULES_FILE is not UTF-8 text")
    except RulesFileError as exc:
        reader.problems.append(f"SESAME_RISK_RULES_FILE {path}: {exc}")
    return default_rules()

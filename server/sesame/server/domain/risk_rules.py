"""The risk rules file (TOML): read and checked at boot, so that a bad file refuses to start, saying where.

```toml
version = "2026-12-06.1"          # names the rules in every assessment, with the file's digest

[[rules]]
id = "new-payee-transfer"          # lower case, digits and dashes; unique
description = "A transfer of 1,000 or more to a payee added less than 72 hours ago"
when = [["operation", "==", "credit_transfer"], ["payee_added_hours", "<", 72], ["amount", ">=", 1000]]
decision = "HOLD"                  # ALLOW, WARN, HOLD or DENY
reason = "NEW_PAYEE"               # the stable code callers see
```

Every clause of `when` must hold; a clause over a signal that is unknown for an operation never holds.
The signals and their types are `risk_signals.SIGNALS`: a clause naming another signal, comparing a flag
with a number or ordering a name is refused with the line it is on.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sesame.server.domain.risk import OPERATORS, Clause, RiskDecision, Rule, RuleSet, SignalValue
from sesame.server.domain.risk_signals import SIGNALS, SignalType

_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")
_REASON = re.compile(r"^[A-Z][A-Z0-9_]{1,39}\Z")
_ORDERING = frozenset({"<", "<=", ">", ">="})
_KEYS = frozenset({"id", "description", "when", "decision", "reason"})
MAX_DESCRIPTION = 200
DEFAULT_RULES = "risk_rules.toml"


class RulesFileError(ValueError):
    """The rules file is not valid: `line` (1-based, 0 when unknown) and `reason` say where and why."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Source:
    """The file's lines and where each `[[rules]]` table starts, to name the line of a problem."""

    lines: tuple[str, ...]
    starts: tuple[int, ...]  # 0-based index of each `[[rules]]` header

    @classmethod
    def of(cls, text: str) -> _Source:
        lines = tuple(text.splitlines())
        starts = tuple(i for i, line in enumerate(lines) if line.strip().startswith("[[rules]]"))
        return cls(lines, starts)

    def line(self, rule: int, needle: str) -> int:
        """The 1-based line of rule number `rule` that holds `needle` (its header when none does)."""
        if rule >= len(self.starts):
            return 0
        start = self.starts[rule]
        end = self.starts[rule + 1] if rule + 1 < len(self.starts) else len(self.lines)
        for i in range(start, end):
            if needle in self.lines[i]:
                return i + 1
        return start + 1


def parse(text: str) -> RuleSet:
    """The rule set the file's text holds. RulesFileError with the line and the reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", 0) or _line_of(str(exc))
        raise RulesFileError(line, f"not TOML: {exc}") from None
    source = _Source.of(text)
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise RulesFileError(_first(source, "version"), "`version` must be a non-empty string")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesFileError(0, "no [[rules]]: a file with no rule would allow everything silently")
    unknown = set(data) - {"version", "rules"}
    if unknown:
        key = min(unknown)
        raise RulesFileError(_first(source, key), f"unknown key {key!r}")
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        rule = _rule(source, index, raw)
        if any(known.rule_id == rule.rule_id for known in rules):
            raise RulesFileError(source.line(index, "id"), f"rule id {rule.rule_id!r} is used twice")
        rules.append(rule)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return RuleSet(version=f"{version.strip()}+{digest}", rules=tuple(rules))


def default_rules() -> RuleSet:
    """The default rules shipped with Sésame (`risk_rules.toml` beside this module; docs/risk.md)."""
    return parse(resources.files(__package__).joinpath(DEFAULT_RULES).read_text(encoding="utf-8"))


def _first(source: _Source, needle: str) -> int:
    return next((i + 1 for i, line in enumerate(source.lines) if line.strip().startswith(needle)), 0)


def _line_of(message: str) -> int:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else 0


def _rule(source: _Source, index: int, raw: Any) -> Rule:
    where = source.line(index, "[[rules]]")
    if not isinstance(raw, dict):
        raise RulesFileError(where, "a rule must be a table")
    extra = set(raw) - _KEYS
    if extra:
        key = min(extra)
        raise RulesFileError(source.line(index, key), f"unknown key {key!r} in a rule")
    for key in sorted(_KEYS - set(raw)):
        raise RulesFileError(where, f"the rule has no {key!r}")
    rule_id, description = raw["id"], raw["description"]
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise RulesFileError(
            source.line(index, "id"), "id: lower case letters, digits and dashes, at most 64"
        )
    if not isinstance(description, str) or not 0 < len(description.strip()) <= MAX_DESCRIPTION:
        raise RulesFileError(
            source.line(index, "description"), f"description: 1 to {MAX_DESCRIPTION} characters"
        )
    decision = raw["decision"]
    if not isinstance(decision, str) or decision not in RiskDecision.__members__:
        raise RulesFileError(source.line(index, "decision"), "decision: one of ALLOW, WARN, HOLD, DENY")
    reason = raw["reason"]
    if not isinstance(reason, str) or not _REASON.match(reason):
        raise RulesFileError(source.line(index, "reason"), "reason: an upper-case code such as NEW_PAYEE")
    when = raw["when"]
    if not isinstance(when, list) or not when:
        raise RulesFileError(
            source.line(index, "when"), "when: a non-empty list of [signal, operator, value]"
        )
    clauses = tuple(_clause(source, index, clause) for clause in when)
    return Rule(rule_id, description.strip(), clauses, RiskDecision[decision], reason)


def _clause(source: _Source, index: int, raw: Any) -> Clause:
    if not isinstance(raw, list) or len(raw) != 3 or not isinstance(raw[0], str):
        raise RulesFileError(source.line(index, "when"), "a clause is [signal, operator, value]")
    signal, op, value = raw
    line = source.line(index, f'"{signal}"')
    if signal not in SIGNALS:
        raise RulesFileError(line, f"unknown signal {signal!r} (docs/risk.md lists them)")
    if op not in OPERATORS:
        raise RulesFileError(line, f"unknown operator {op!r}: one of {', '.join(OPERATORS)}")
    kind = SIGNALS[signal]
    if op == "in":
        if not isinstance(value, list) or not value:
            raise RulesFileError(line, "`in` takes a non-empty list")
        return Clause(signal, op, tuple(_value(line, signal, kind, item) for item in value))
    if op in _ORDERING and kind is not SignalType.NUMBER:
        raise RulesFileError(line, f"{signal} is a {kind.value}: it cannot be ordered")
    return Clause(signal, op, _value(line, signal, kind, value))


def _value(line: int, signal: str, kind: SignalType, value: Any) -> SignalValue:
    ok = {
        # Finite: TOML reads nan and inf, with which a clause never (or always) holds, and which JSON, the
        # program's form for the step (risk_program), does not have.
        SignalType.NUMBER: isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value),
        SignalType.FLAG: isinstance(value, bool),
        SignalType.NAME: isinstance(value, str),
    }[kind]
    if not ok:
        raise RulesFileError(line, f"{signal} is a {kind.value}: {value!r} is not one")
    return value  # type: ignore[no-any-return]

"""Risk scenarios: timed events of one customer, replayed on the rules (`sesame risk replay FILE...`).

A scenario is a TOML file: who the customer is (`device`, `ip`), whether it is a `fraud`, and its
`[[events]]` in order, each `after` the previous one (`"3m"`, `"21h"`, `"7d"`):
`add_payee` (`payee`, `name`), `transfer` (`payee`, `name`, `amount` in EUR), `login`, `wrong_codes`
(`count` wrong codes in a row), `sim_swap` (the operator reports a SIM change now), `number_change` (the
secure number changes now); any event may name its own `device` and `ip`, and `expect` the decision.
`past = "ordinary"` puts three months of rent and groceries, from the customer's device, before them.
Every operation is approved (its code verified) unless denied. The replay here uses the server's own
signals, memory semantics and rules with the scenario's clock; `tests/e2e/test_risk_scenarios.py` runs
the same files through the real server.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sesame.server.domain.model import RequestContext, User, UserStatus
from sesame.server.domain.operation import AddBeneficiary, CreditTransfer, Login, Money, Operation, Payee
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RuleSet
from sesame.server.domain.risk_signals import (
    SIM_SWAP_OFF,
    RiskHistory,
    RiskLimits,
    SimSwapStatus,
    observation,
    remember,
    signals,
)

LANDLORD = {"payee": "FR7630001007941234567890185", "name": "Bailleur"}
GROCER = {"payee": "FR1420041010050500013M02606", "name": "Epicerie"}
# Three months of an ordinary customer: two payees, then rent and groceries (amounts 95 to 850 EUR).
ORDINARY_PAST: list[dict[str, Any]] = [
    {"kind": "add_payee", **LANDLORD},
    {"kind": "add_payee", "after": "1d", **GROCER},
    *[
        step
        for _ in range(3)
        for step in (
            {"kind": "transfer", "after": "10d", "amount": 850, **LANDLORD},
            {"kind": "transfer", "after": "3d", "amount": 120, **GROCER},
            {"kind": "transfer", "after": "9d", "amount": 95, **GROCER},
        )
    ],
]
KINDS = frozenset({"add_payee", "transfer", "login", "wrong_codes", "sim_swap", "number_change"})
OPERATIONS = frozenset({"add_payee", "transfer", "login"})
_AFTER = re.compile(r"^([0-9]+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# Bounds of what a file may say (decision 0105): beyond them the replay overflowed Python's dates or
# integers with a traceback (exit 1, read as "a decision not the one expected") instead of naming the event.
MAX_SPAN = timedelta(days=100 * 366)  # the whole scenario, its ordinary past included
MAX_AMOUNT = 10**12  # EUR, far above any transfer
MAX_COUNT = 1_000_000  # wrong codes in a row


class ScenarioError(ValueError):
    """A scenario file that cannot be replayed; the message says which event and why."""


@dataclass(frozen=True, slots=True)
class Event:
    """One timed step of a scenario."""

    kind: str
    after: timedelta
    payee: str = ""
    name: str = ""
    amount_minor: int = 0
    count: int = 0
    device: str = ""
    ip: str = ""
    expect: RiskDecision | None = None
    past: bool = False  # one of the ordinary past's events: replayed, not reported

    def operation(self) -> Operation:
        """The operation a code is asked for (`add_payee`, `transfer`, `login` only)."""
        match self.kind:
            case "add_payee":
                return AddBeneficiary(Payee(self.name, self.payee))
            case "transfer":
                return CreditTransfer(Money("EUR", self.amount_minor), Payee(self.name, self.payee), "replay")
            case _:
                return Login()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A customer's timed events, and whether they are a fraud."""

    name: str
    fraud: bool
    description: str
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Decided:
    """What the rules decided at one event."""

    index: int
    event: Event
    at: datetime
    assessment: RiskAssessment

    @property
    def as_expected(self) -> bool:
        """Whether the event's `expect`, if any, is what was decided."""
        return self.event.expect is None or self.event.expect is self.assessment.decision


def load(path: Path) -> Scenario:
    """The scenario a file holds. ScenarioError."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    # UnicodeDecodeError: a file that is not UTF-8 text (it escaped as a traceback, exit 1).
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    raw_events = data.get("events")
    if not isinstance(raw_events, list) or not raw_events:
        raise ScenarioError(f"{path}: no [[events]]")
    defaults = {"device": str(data.get("device", "")), "ip": str(data.get("ip", ""))}
    past = data.get("past", "none")
    if not isinstance(past, str) or past not in {"none", "ordinary"}:
        raise ScenarioError(f"{path}: past must be none or ordinary")
    before = ORDINARY_PAST if past == "ordinary" else []
    events = tuple(
        _event(path, i, raw if not isinstance(raw, dict) else {**raw, "past": i <= len(before)}, defaults)
        for i, raw in enumerate([*before, *raw_events], start=1)
    )
    if sum((event.after for event in events), timedelta()) > MAX_SPAN:
        raise ScenarioError(f"{path}: the events span more than {MAX_SPAN.days} days")
    return Scenario(
        name=str(data.get("name", path.stem)),
        fraud=bool(data.get("fraud", False)),
        description=str(data.get("description", "")),
        events=events,
    )


def _event(path: Path, index: int, raw: Any, defaults: dict[str, str]) -> Event:
    where = f"{path}: event {index}"
    # Each value's type is checked before it is used: a list where a word is expected, or a word where a
    # number is, raised TypeError or ValueError out of the command (decision 0105).
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str) or raw["kind"] not in KINDS:
        raise ScenarioError(f"{where}: kind must be one of {', '.join(sorted(KINDS))}")
    match = _AFTER.match(str(raw.get("after", "0s")))
    if match is None or len(match.group(1)) > 9:
        raise ScenarioError(f"{where}: after must be like 3m, 21h or 7d")
    after = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if after > MAX_SPAN:
        raise ScenarioError(f"{where}: after must be at most {MAX_SPAN.days}d")
    expect = raw.get("expect")
    if expect is not None and (not isinstance(expect, str) or expect not in RiskDecision.__members__):
        raise ScenarioError(f"{where}: expect must be ALLOW, WARN, HOLD or DENY")
    if raw["kind"] in {"add_payee", "transfer"} and not raw.get("payee"):
        raise ScenarioError(f"{where}: a payee (IBAN) is needed")
    amount = raw.get("amount", 0)
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount <= MAX_AMOUNT:
        raise ScenarioError(f"{where}: amount must be a number of EUR from 0 to {MAX_AMOUNT}")
    count = raw.get("count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
        raise ScenarioError(f"{where}: count must be a whole number from 0 to {MAX_COUNT}")
    return Event(
        kind=raw["kind"],
        after=after,
        payee=str(raw.get("payee", "")),
        name=str(raw.get("name", "Payee")),
        amount_minor=round(amount * 100),
        count=count,
        device=str(raw.get("device", defaults["device"])),
        ip=str(raw.get("ip", defaults["ip"])),
        expect=None if expect is None else RiskDecision[expect],
        past=bool(raw.get("past", False)),
    )


@dataclass
class _Customer:
    user: User
    history: RiskHistory = field(default_factory=RiskHistory)
    sim: SimSwapStatus = SIM_SWAP_OFF


def replay(scenario: Scenario, rules: RuleSet, limits: RiskLimits | None = None) -> list[Decided]:
    """Each operation's decision, on the scenario's clock, every approved operation remembered."""
    now = START
    customer = _Customer(User("replay", "bank", "+33612345678", "fr", UserStatus.ACTIVE, START))
    decided: list[Decided] = []
    for index, event in enumerate(scenario.events, start=1):
        now += event.after
        if event.kind == "wrong_codes":
            customer.user = replace(customer.user, failures=customer.user.failures + event.count)
            continue
        if event.kind == "sim_swap":
            customer.sim = SimSwapStatus("swapped", now)
            continue
        if event.kind == "number_change":
            customer.user = replace(customer.user, phone_changed_at=now)
            continue
        operation = event.operation()
        context = RequestContext(ip=event.ip, device_id=event.device)
        sensitive = event.kind != "login"
        sim = customer.sim if sensitive else SimSwapStatus("not_asked")
        found = signals(
            operation=operation,
            user=customer.user,
            history=customer.history,
            context=context,
            sim=sim,
            now=now,
        )
        assessment = rules.assess(found)
        if not event.past:
            decided.append(Decided(index, event, now, assessment))
        if assessment.decision is not RiskDecision.DENY:
            seen = observation(customer.user.user_id, f"replay-{index}", operation, context, now)
            customer.history = remember(customer.history, seen, limits or RiskLimits())
            customer.user = replace(customer.user, failures=0, blocks=0)  # a right code resets them
    return decided


def flagged(decided: list[Decided]) -> bool:
    """Whether any operation of the scenario was anything but ALLOW."""
    return any(d.assessment.decision is not RiskDecision.ALLOW for d in decided)


def describe(scenario: Scenario, decided: list[Decided]) -> list[str]:
    """One line per decision: when, what, the decision and its reasons, and a mismatch with `expect`."""
    kind = "fraud" if scenario.fraud else "benign"
    past = sum(1 for event in scenario.events if event.past)
    lines = [
        f"{scenario.name} ({kind}): {scenario.description}"
        + (f" [after {past} ordinary events]" if past else "")
    ]
    for d in decided:
        what = d.event.kind + (f" {d.event.amount_minor / 100:.2f} EUR" if d.event.kind == "transfer" else "")
        reasons = ", ".join(f"{r.code} ({r.description})" for r in d.assessment.reasons) or "-"
        miss = "" if d.as_expected else f"   <-- expected {d.event.expect.name if d.event.expect else ''}"
        lines.append(f"  {d.at:%Y-%m-%d %H:%M} {what:<24} {d.assessment.decision.name:<5} {reasons}{miss}")
    return lines


def summary(results: list[tuple[Scenario, list[Decided]]]) -> list[str]:
    """Detection on the frauds, false positives on the benign scenarios (by scenario and by operation)."""
    frauds = [decided for scenario, decided in results if scenario.fraud]
    benign = [decided for scenario, decided in results if not scenario.fraud]
    caught = sum(1 for decided in frauds if any(d.assessment.decision >= RiskDecision.HOLD for d in decided))
    false_scenarios = sum(1 for decided in benign if flagged(decided))
    operations = [d for decided in benign for d in decided]
    false_operations = sum(1 for d in operations if d.assessment.decision is not RiskDecision.ALLOW)
    by_scenario = f"{false_scenarios}/{len(benign)} = {_rate(false_scenarios, len(benign))}"
    by_operation = f"{false_operations}/{len(operations)} = {_rate(false_operations, len(operations))}"
    return [
        f"frauds held or denied: {caught}/{len(frauds)}",
        f"false-positive rate (benign scenarios flagged): {by_scenario}",
        f"false-positive rate (benign operations flagged): {by_operation}",
    ]


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def run(paths: list[Path], rules: RuleSet) -> tuple[list[str], bool]:
    """The report of `sesame risk replay`, and whether every `expect` held."""
    results = [(scenario, replay(scenario, rules)) for scenario in map(load, paths)]
    lines = [f"rules {rules.version}"]
    for scenario, decided in results:
        lines += describe(scenario, decided)
    lines += summary(results)
    return lines, all(d.as_expected for _, decided in results for d in decided)

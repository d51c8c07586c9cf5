"""The risk rules as a script's step reads them: a program (Lua source, per operation), and the question one
Start asks of it.

`_risk_rules.lua` computes the signals from the user's memory and applies the program, as
`risk_signals.signals` and `RuleSet.assess` do in Python (docs/risk.md); the rules are compiled once, at
boot, from the checked `RuleSet`. Instants go as unix milliseconds, the precision the memory keeps them at:
so both evaluators see the same numbers (tests/contracts/test_risk_rules_lua.py holds them equal).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sesame.clients import redis_records as rec
from sesame.server.domain.currency import minor_units_per_major
from sesame.server.domain.model import RequestContext
from sesame.server.domain.operation import CreditTransfer, Operation, OperationType, kind
from sesame.server.domain.risk import RuleSet, SignalValue
from sesame.server.domain.risk_signals import fingerprint

# The signals the memory cannot give: the operator's SIM-swap answer, the bank's forwarded summary and
# Verification of Payee answer (decision 0099), whether the payee's name speaks in the bank's voice (0098).
_KINDS = tuple(member.name.lower() for member in OperationType)  # as `question` names the operation
GIVEN = (
    "sim_swap",
    "sim_swapped_hours",
    "payee_first_used_hours",
    "account_age_days",
    "balance_share",
    "payee_name_alert",
    "payee_verification",
)


def compiled(rules: RuleSet) -> str:
    """`program(rules)`, compiled once per rule set (a server has one; a replay a few)."""
    return _compiled(rules)


def program(rules: RuleSet) -> str:
    """A Lua table constructor, one function per kind of operation that builds its section (the step
    builds its operation's only, `risk_program_for`, decision 0051): the version and, in file order, the
    rules that may match that kind (`Rule.may_match`), each with its id, decision (1 ALLOW .. 4 DENY),
    reason code and the clauses other than the `operation` ones (they hold for that kind: a signal the step
    never needs to compare), cheapest first (`_COST`: the order of a rule's clauses changes which the step
    reads, never whether the rule matches). It is part of the text of the script Start runs for this rule
    set (`Scripts.run`'s `program`): built at each call from constants Redis compiled once, where decoding
    the same section from JSON cost the step ~50 µs (decision 0076)."""
    kinds = ", ".join(
        f"[{_lua(name)}] = function() return {_lua(_section(rules, name))} end" for name in _KINDS
    )
    return f"{{{kinds}}}"


def _lua(value: object) -> str:
    """`value` (from `_section`: dicts of names, lists, text, numbers, flags) as a Lua constructor that builds
    what cjson.decode made of its JSON: lists from 1, numbers as doubles (repr: the shortest text that reads
    back to the same double), text as bytes in decimal escapes but for letters, digits and `_.:-` (no quote,
    bracket or newline of a rule's text can end the literal)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return '"' + "".join(chr(b) if chr(b) in _PLAIN else f"\\{b:03d}" for b in value.encode()) + '"'
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_lua(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(str(key))}] = {_lua(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"not in a program: {type(value).__name__}")


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


# What reading a signal costs the step, the question's own (the operation, the amount, `GIVEN`) nothing: a
# rule's clauses go cheapest first, as every one must hold and the step stops at the first that fails (the
# amounts are not read for a transfer below a rule's amount). The user's counters, a member's instant, a
# window's members, the whole list of amounts (_risk_rules.lua's groups).
_COST = {
    **dict.fromkeys(("wrong_codes_in_a_row", "blocks_in_a_row", "phone_changed_hours"), 1),
    **dict.fromkeys(("payee_paid_before", "payee_added_hours", "new_device", "new_ip"), 2),
    **dict.fromkeys(("payees_added_24h", "payee_burst", "transfers_24h", "sensitive_ops_1h"), 3),
    **dict.fromkeys(("amounts_known", "usual_amount", "amount_vs_usual", "amount_robust_z"), 4),
    **dict.fromkeys(("amount_vs_largest", "new_currency"), 4),
}


def _section(rules: RuleSet, operation: str) -> dict[str, object]:
    return {
        "version": rules.version,
        "rules": [
            {
                "id": rule.rule_id,
                "decision": int(rule.decision),
                "reason": rule.reason,
                "when": [
                    [c.signal, c.op, list(c.value) if isinstance(c.value, tuple) else c.value]
                    for c in sorted(rule.when, key=lambda c: _COST.get(c.signal, 0))
                    if c.signal != "operation"
                ],
            }
            for rule in rules.rules
            if rule.may_match(operation)
        ],
    }


def question(
    operation: Operation,
    context: RequestContext,
    now: datetime,
    given: Mapping[str, SignalValue],
    denial: Denial | None = None,
) -> str:
    """What the step needs besides the memory: the operation's kind, the instant, the payee's, IP's and
    device's fingerprints ('' for none), the transfer's amount, its currency and the minor units in one of
    its major units (`unit`: the step reads amounts as `risk_signals` does, with the ISO 4217 exponent Python
    knows), the `GIVEN` signals that are known, and, for Start's step, what a DENY journals (`denial`) and
    the number the SIM-swap answer is about."""
    transfer = operation if isinstance(operation, CreditTransfer) else None
    asked: dict[str, object] = {
        "op": kind(operation).name.lower(),
        "now": rec.to_ms(now),
        "payee": fingerprint("iban", transfer.payee.iban) if transfer else "",
        "amount_minor": transfer.amount.amount_minor if transfer else 0,
        "currency": transfer.amount.currency if transfer else "",
        "unit": minor_units_per_major(transfer.amount.currency) if transfer else 1,
        "ip": fingerprint("ip", context.ip) if context.ip else "",
        "device": fingerprint("device", context.device_id) if context.device_id else "",
        # An object even when empty: cjson reads [] and {} alike, Python writes {} for an empty dict.
        "given": {name: given[name] for name in GIVEN if name in given},
    }
    if denial is not None:  # the DENY's journal entry, less what the step adds (decision 0042)
        head = rec.denial_head(denial.user_id, now, kind(operation).name.lower(), operation)
        asked |= {
            "denied": [str(value) for value in head],
            "context": [str(value) for value in rec.context_fields(context)],
        }
        if denial.sim_number is not None:
            asked["sim_for"] = denial.sim_number
    return _compact(asked)


@dataclass(frozen=True, slots=True)
class Denial:
    """Whose journal a DENY goes to, and the number the SIM answer is about."""

    user_id: str
    sim_number: str | None = None


def signals_of(reply: list[bytes]) -> dict[str, SignalValue]:
    """`risk_signals_reply`'s flat answer as signals: numbers, flags ('f:'), names ('n:')."""
    out: dict[str, SignalValue] = {}
    for name, raw in zip(reply[::2], reply[1::2], strict=True):
        text = raw.decode()
        if text.startswith("f:"):
            out[name.decode()] = text == "f:1"
        elif text.startswith("n:"):
            out[name.decode()] = text[2:]
        else:
            out[name.decode()] = float(text)
    return out


# One encoder: `json.dumps` with options builds a new one at every call (Start's question, decision 0049).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _compact(value: object) -> str:
    return _ENCODER.encode(value)


@functools.lru_cache(maxsize=8)
def _compiled(rules: RuleSet) -> str:
    return program(rules)

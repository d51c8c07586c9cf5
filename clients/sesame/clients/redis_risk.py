"""Each user's risk memory on Redis, in the user's `{s:<n>}` place (docs/risk.md): its keys and what a
verified code teaches it.

Sorted sets of fingerprints scored by their last instant (payees paid, beneficiaries added, IPs, devices,
verified operations) and a list of the last amounts; each part is cut to its newest entries and expires after
the retention. Only steps read and feed it (`_risk_memory.lua`): open_challenge reads it and applies the rules
(decision 0045), record_verification feeds it (decision 0032).
"""

from __future__ import annotations

from sesame.clients import redis_records as rec
from sesame.clients.redis_keys import Keyspace
from sesame.server.domain.risk_signals import RiskLimits, RiskObservation

_SETS = ("payees", "added", "ips", "devices", "ops")


def memory_parts(keys: Keyspace, user_id: str) -> list[str]:
    """The names of a user's memory parts, in _risk_memory.lua's order: the five sets, then the amounts."""
    return [*(keys.user_risk(user_id, part) for part in _SETS), keys.user_risk(user_id, "amounts")]


def lesson_args(seen: RiskObservation, limits: RiskLimits) -> list[rec.Field]:
    """`risk_remember`'s 14 arguments (_risk_memory.lua): the instant, retention, caps, members, amount."""
    amount = "" if seen.amount is None else f"{seen.amount[0]}:{seen.amount[1]}"
    return [
        rec.to_ms(seen.at),
        limits.retention // rec.MS,
        limits.payees,
        limits.added,
        limits.ips,
        limits.devices,
        limits.operations,
        limits.amounts,
        seen.payee_paid,
        seen.payee_added,
        seen.ip,
        seen.device,
        seen.operation_key,
        amount,
    ]


NO_LESSON: list[rec.Field] = ["", *([""] * 14)]  # record_verification's risk arguments when nothing is learnt

"""Journal fields and times as the Redis scripts write them, for the in-memory fake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sesame.server.domain import factors
from sesame.server.domain.lifecycle import ByChallenge, ByOverride, PhoneChange, Provenance
from sesame.server.domain.model import RequestContext

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(at: datetime) -> datetime:
    """The instant as Redis keeps it: UTC, floored to the millisecond."""
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def unix_ms(at: datetime | None) -> str:
    """Unix milliseconds as the scripts journal them, "0" for none."""
    return "0" if at is None else str((at - EPOCH) // timedelta(milliseconds=1))


def iso(at: datetime) -> str:
    """ISO 8601 UTC with milliseconds, as the journal shows times."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def context_fields(context: RequestContext) -> dict[str, str]:
    """The end user's context as journal fields."""
    return {
        "ip": context.ip,
        "device_id": context.device_id,
        "session_id": context.session_id,
        "user_agent": context.user_agent,
        "caller": context.caller,
        **factors.journal_fields(
            context.first_factor,
            "" if context.first_factor is None else iso(context.first_factor.verified_at),
        ),
        **({"payee_verification": context.payee_verification} if context.payee_verification else {}),
    }


def provenance_fields(provenance: Provenance) -> dict[str, str]:
    """Who asked for a registry change and why, as journal fields."""
    return {
        "actor": provenance.actor,
        "reason": provenance.reason,
        "request_id": provenance.request_id,
        "caller": provenance.caller,
    }


def authority_fields(change: PhoneChange) -> dict[str, str]:
    """How a number change was authorised, as journal fields."""
    match change.authority:
        case ByChallenge(challenge_id=challenge_id):
            return {"method": "challenge", "challenge_id": challenge_id, "operator": ""}
        case ByOverride(operator=operator):
            return {"method": "override", "challenge_id": "", "operator": operator}

"""The evidence index (docs/decisions/0036): which challenges a user opened, when, for which transaction.

A dispute names a customer and a date, or the bank's transaction id; the journal is kept by challenge. The
index maps the one to the other: one small entry per challenge in the user's slot, written once its
`challenge.opened` entry is sealed and archived, dropped after the evidence retention.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sesame.server.domain import operation


@dataclass(frozen=True, slots=True)
class EvidenceMatch:
    """One challenge of a user's index."""

    challenge_id: str
    opened_at: datetime
    transaction_id: str  # the caller's transaction id of its operation; "" when the operation has none
    indexed: bool = True  # False: named by the user's sealed openings journal only, the index lost it (0042)


@dataclass(frozen=True, slots=True)
class IndexedOpening:
    """A `challenge.opened` entry, as the index keeps it."""

    user_id: str
    match: EvidenceMatch


def indexed_opening(fields: Mapping[str, str]) -> IndexedOpening | None:
    """What the index keeps of a journal entry; None unless it opens a challenge (or is not readable)."""
    if (
        fields.get("event") != "challenge.opened"
        or not fields.get("user_id")
        or not fields.get("challenge_id")
    ):
        return None
    try:
        opened_at = datetime.fromisoformat(fields["at"])
    except (KeyError, ValueError):
        return None
    return IndexedOpening(fields["user_id"], EvidenceMatch(fields["challenge_id"], opened_at, _tx(fields)))


def journaled_opening(fields: Mapping[str, str]) -> EvidenceMatch | None:
    """What a `user.challenge` entry of a user's openings journal names (decision 0042); None otherwise."""
    if fields.get("event") != "user.challenge" or not fields.get("challenge_id"):
        return None
    try:
        opened_at = datetime.fromisoformat(fields["at"])
    except (KeyError, ValueError):
        return None
    return EvidenceMatch(fields["challenge_id"], opened_at, fields.get("transaction_id", ""), indexed=False)


def completed(indexed: Sequence[EvidenceMatch], journaled: Sequence[EvidenceMatch]) -> list[EvidenceMatch]:
    """The index's matches with those the sealed openings journal names that the index lost, oldest first."""
    known = {m.challenge_id for m in indexed}
    lost = {m.challenge_id: m for m in journaled if m.challenge_id not in known}
    return sorted([*indexed, *lost.values()], key=lambda m: (m.opened_at, m.challenge_id))


def _tx(fields: Mapping[str, str]) -> str:
    encoded = fields.get("operation", "")
    if not encoded:
        return ""
    try:
        decoded = operation.decode(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except ValueError:
        return ""
    return str(getattr(decoded, "transaction_id", ""))

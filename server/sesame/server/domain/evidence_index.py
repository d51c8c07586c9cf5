"""The evidence index (docs/decisions/0036): which challenges a user opened, when, for which transaction.

A dispute names a customer and a date, or the bank's transaction id; the journal is kept by challenge. The
index maps the one to the other: one small entry per challenge in the user's slot, written once its
`challenge.opened` entry is sealed and archived, dropped after the evidence retention.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sesame.server.domain import operation


@dataclass(frozen=True, slots=True)
class EvidenceMatch:
    """One challenge of a user's index."""

    challenge_id: str
    opened_at: datetime
    transaction_id: str  # the caller's transaction id of its operation; "" when the operation has none


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


def _tx(fields: Mapping[str, str]) -> str:
    encoded = fields.get("operation", "")
    if not encoded:
        return ""
    try:
        decoded = operation.decode(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except ValueError:
        return ""
    return str(getattr(decoded, "transaction_id", ""))

"""What a user's evidence holds beside its challenges (EvidenceService.GetUserEvidence, decision 0036).

The challenges come from the user's evidence index (by period, or by the caller's transaction id), a page at
a time; each is then read with GetChallengeEvidence. The first page also gives the user's lifecycle journal
(enrolment, number changes, suspensions, blocks, revocation) and the health notes of the period, with the
seals that cover those entries (from the archive, then from Redis) and the journal keys' JWK set: the client
checks them, and proves each entry's inclusion, with nothing else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sesame.clients.redis_journal import RedisJournal
from sesame.server.domain import proof
from sesame.server.domain.errors import FieldViolation, InvalidRequest
from sesame.server.domain.evidence_index import EvidenceMatch
from sesame.server.domain.journal_seal import Seal, seal_to_dict
from sesame.server.domain.ports import EvidenceIndex, HealthNotes
from sesame.server.domain.proofs import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from sesame.server.journal_archive import JournalArchive
from sesame.server.journal_evidence import JournalPublicKeys


@dataclass(frozen=True, slots=True)
class UserQuery:
    """Which of a user's challenges, and which page."""

    user_id: str
    since: datetime | None = None
    until: datetime | None = None
    transaction_id: str = ""
    page_token: str = ""
    page_size: int = 0


@dataclass(frozen=True, slots=True)
class UserEvidence:
    """One page of the challenges found; on the first page, lifecycle, health notes and their seals."""

    challenges: list[EvidenceMatch]
    next_page_token: str
    lifecycle: list[dict[str, str]]
    health: list[dict[str, str]]
    seals_json: str


class UserEvidenceReader:
    """Reads a user's evidence: the index, the user's journal, the health notes, their seals."""

    def __init__(
        self,
        *,
        index: EvidenceIndex,
        journal: RedisJournal,
        notes: HealthNotes,
        keys: JournalPublicKeys,
        archive: JournalArchive | None,
    ) -> None:
        self._index = index
        self._journal = journal
        self._notes = notes
        self._keys = keys
        self._archive = archive

    async def __call__(self, query: UserQuery) -> UserEvidence:
        """See the module. InvalidRequest for a bad period, page size or page token."""
        offset, size = _page(query)
        found = await self._index.find(query.user_id, query.since, query.until, query.transaction_id)
        page = found[offset : offset + size]
        token = str(offset + size) if offset + size < len(found) else ""
        if query.page_token:
            return UserEvidence(page, token, [], [], "")
        stream = self._journal.keys.user_journal(query.user_id)
        lifecycle = [
            (i, fields)
            for i, fields in await self._journal.stream_entries(stream)
            if query.until is None or _before(fields.get("at", ""), query.until)
        ]
        since = query.since or (found[0].opened_at if found else None)
        health = await self._notes.notes(since, query.until) if since or query.until else []
        seals = await self._covering([i for i, _ in [*lifecycle, *health]])
        given = {
            "lifecycle_stream": stream,
            "health_stream": self._notes.stream,
            "jwks": proof.jwk_set(await self._keys.journal_public_keys()),
            "seals": [seal_to_dict(seal) for seal in seals],
        }
        return UserEvidence(
            page,
            token,
            [fields for _, fields in lifecycle],
            [fields for _, fields in health],
            json.dumps(given, separators=(",", ":")),
        )

    async def _covering(self, ids: Sequence[str]) -> list[Seal]:
        """The seals whose range of entry ids holds one of `ids`: the archive's, then those still in Redis."""
        if not ids:
            return []
        keyed = sorted(_id_key(i) for i in ids)
        archived = await asyncio.to_thread(self._archive.seals_holding, ids) if self._archive else []
        last = archived[-1].block.number if archived else 0
        since = f"{keyed[0][0]}-{keyed[0][1]}"
        newer = [
            seal
            for seal in await self._journal.seals_from(since)
            if seal.block.number > last
            and any(_id_key(seal.block.first) <= key <= _id_key(seal.block.last) for key in keyed)
        ]
        return [*archived, *newer]


def _page(query: UserQuery) -> tuple[int, int]:
    violations = []
    if not 0 <= query.page_size <= MAX_PAGE_SIZE:
        violations.append(FieldViolation("page_size", f"must be 0 to {MAX_PAGE_SIZE}"))
    if query.page_token and not (query.page_token.isdigit() and len(query.page_token) <= 9):
        violations.append(FieldViolation("page_token", "is not a token a page gave"))
    if query.since and query.until and query.until < query.since:
        violations.append(FieldViolation("until", "is before since"))
    if violations:
        raise InvalidRequest(violations)
    return int(query.page_token or 0), query.page_size or DEFAULT_PAGE_SIZE


def _before(at: str, until: datetime) -> bool:
    try:
        return datetime.fromisoformat(at) < until
    except ValueError:
        return True  # an entry without a readable time is shown, not hidden


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)

"""What a challenge's evidence carries about its seals (docs/decisions/0027), for the client to check.

The server does not vouch for its own journal: it gives the stream's name, the seals that cover the stream
(from the one holding its first entry to the last one holding any of its entries) with their leaves, read from
the archive and then from Redis for the blocks not archived yet, and the public journal keys from the HSM.
`sesame evidence` checks them (`journal_check`) with nothing else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sesame.clients.redis_journal import RedisJournal
from sesame.server import bundle_extent
from sesame.server.domain import proof
from sesame.server.domain.journal_seal import seal_to_dict
from sesame.server.domain.model import PublicKey
from sesame.server.journal_archive import JournalArchive
from sesame.server.journal_reads import ArchivedJournals

FIRST = "0-0"  # the `prev` of a stream's first entry


class JournalPublicKeys(Protocol):
    """The public halves of the journal keys."""

    async def journal_public_keys(self) -> list[PublicKey]:
        """Every `sesame-journal-v<N>` public key, oldest first."""
        ...


class JournalKeyStore(JournalPublicKeys, bundle_extent.JournalSigner, Protocol):
    """The journal keys: their public halves, and the current one to sign an answer's extent (0091)."""


class ChallengeSeals:
    """The seals of a challenge's journal, as JSON."""

    def __init__(self, journal: RedisJournal, keys: JournalKeyStore, archive: JournalArchive | None) -> None:
        self._journal = journal
        self._keys = keys
        self._archive = archive
        self._journals = ArchivedJournals(journal, archive)

    async def __call__(self, challenge_id: str, refusals: Sequence[Mapping[str, Any]] = ()) -> str:
        """The stream, the seals covering it, the journal keys, and the extent those give signed by the
        journal key (`extent`, decision 0091), with the answer's refusal counts (decision 0102); "" when the
        challenge has no journal."""
        stream = self._journal.keys.challenge_journal(challenge_id)
        entries = await self._journals.entries(stream)  # Redis and the archive (decision 0037)
        if not entries:
            return ""
        first_id, first = entries[0]
        # A deleted first entry is named by its successor's `prev`: start with the seal that holds it.
        since = first.get("prev", FIRST) if first.get("prev", FIRST) != FIRST else first_id
        # Those Redis still holds, then the archive's blocks, found through its index: to its newest block
        # when Redis holds a seal of the stream, else to the last block holding it.
        in_redis = await self._journal.seals_from(since)
        held = any(leaf.stream == stream for seal in in_redis for leaf in seal.leaves)
        archived = (
            await asyncio.to_thread(self._archive.seals_from, since, "" if held else stream)
            if self._archive
            else []
        )
        newer = [s for s in in_redis if not archived or s.block.number > archived[-1].block.number]
        seals = [*archived, *newer]
        holding = [i for i, seal in enumerate(seals) if any(leaf.stream == stream for leaf in seal.leaves)]
        covering = seals[: holding[-1] + 1] if holding else []
        head = await self._journal.last_seal()  # read after the seals: no block given is newer
        extent = await bundle_extent.signed(
            self._keys,
            {"challenge_id": challenge_id},
            {"journal": bundle_extent.stated_stream(stream, entries, covering)},
            head.block if head else None,
            refusals=refusals,
        )
        return json.dumps(
            {
                "stream": stream,
                "jwks": proof.jwk_set(await self._keys.journal_public_keys()),
                "seals": [seal_to_dict(seal) for seal in covering],
                "extent": extent,
            },
            separators=(",", ":"),
        )

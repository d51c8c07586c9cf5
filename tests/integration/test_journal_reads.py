"""The ChallengeJournal port read from Redis and the archive (docs/decisions/0037): once a closed challenge's
journal left Redis, `ChallengeJournals` answers what the Redis adapter answered before, page by page."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.domain.errors import ChallengeClosed, InvalidRequest
from sesame.server.domain.model import RequestContext
from sesame.server.domain.ports import ChallengeJournal
from sesame.server.journal_archive import JournalArchive
from sesame.server.journal_reads import ArchivedJournals, ChallengeJournals
from sesame.server.sealer import Sealer
from tests.factories import a_challenge, its_user_enrolled


async def test_a_dropped_journal_reads_as_before_page_by_page(
    redis_store: RedisState, redis_client: aioredis.Redis, keystore: Pkcs11KeyStore, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    challenge = await its_user_enrolled(redis_store, a_challenge(now))
    challenge_id = challenge.challenge_id
    await redis_store.challenges.open_challenge(challenge, RequestContext())
    await redis_store.challenges.cancel_challenge(challenge_id, now, RequestContext())
    for _ in range(2):
        with pytest.raises(ChallengeClosed):
            await redis_store.challenges.cancel_challenge(challenge_id, now, RequestContext())
    redis = redis_store.journal
    whole = await redis.challenge_journal(challenge_id)
    paged = {size: await _pages(redis, challenge_id, size) for size in (1, 2, 5)}
    refusals = await redis.challenge_refusals(challenge_id)

    journal = redis_store.sealed_journal()
    archive = JournalArchive(tmp_path / "archive")
    await Sealer(journal, keystore, archive).step()
    stream = redis_store.keys.challenge_journal(challenge_id)
    assert await redis_client.exists(stream) == 0  # left for the archive

    both = ChallengeJournals(ArchivedJournals(journal, archive), journal, redis)
    assert await both.challenge_journal(challenge_id) == whole
    assert {size: await _pages(both, challenge_id, size) for size in (1, 2, 5)} == paged
    assert await both.challenge_refusals(challenge_id) == refusals
    with pytest.raises(InvalidRequest):
        await both.challenge_journal_page(challenge_id, "not-a-token", 1)
    assert await both.challenge_journal("0" * 32 + ".k1.d6.u" + "0" * 16) == []


async def _pages(journal: ChallengeJournal, challenge_id: str, size: int) -> list[list[dict[str, str]]]:
    pages, token = [], ""
    while True:
        page = await journal.challenge_journal_page(challenge_id, token, size)
        pages.append(page.entries)
        token = page.next_token
        if not token:
            return pages

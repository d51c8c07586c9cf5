"""Out of memory (maxmemory with noeviction), the sealer runs: it is what lets closed challenges' journals,
the sealed feeds and the archived seals go from Redis (decision 0132, amending 0111).

It was refused at its first write that may grow memory: the lease taken (journal_lease.lua's `SET`), a
feed's last id (read_feed.lua's `SET`), the seal (record_seal.lua's `XADD`), the openings' index
(index_openings.lua's `ZADD`), the journals kept while open (a `ZADD`). A full Redis sealed nothing, archived
nothing and let nothing go, and stayed full until someone freed memory by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_connect import connect
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.app import journal_sealer
from sesame.server.domain.model import Challenge, RequestContext
from sesame.server.journal_archive import JournalArchive
from sesame.server.metrics import Metrics
from sesame.server.sealer import Sealer, SealerTiming
from tests.factories import a_challenge, its_user_enrolled
from tests.support.full_redis import full, stored
from tests.support.redis_cluster import LoopbackCluster

pytestmark = pytest.mark.integration

CLOSED = 20  # challenges closed out of memory, whose journals the sealer lets go


def sealer_of(store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path) -> Sealer:
    """The sealer as `sesame serve` makes it (with the evidence index), archiving under `tmp_path`."""
    archive = JournalArchive(tmp_path / "archive")
    return journal_sealer(store, keystore, archive, Metrics().journal, SealerTiming())


async def opened(store: RedisState, nonces: range) -> list[Challenge]:
    """A challenge of `u-1` opened for each nonce (the user enrolled first)."""
    challenges = []
    for nonce in nonces:
        challenge = await its_user_enrolled(store, a_challenge(datetime.now(UTC), nonce=bytes([nonce]) * 16))
        await store.challenges.open_challenge(challenge, RequestContext())
        challenges.append(challenge)
    return challenges


async def test_out_of_memory_the_sealer_seals_archives_indexes_and_lets_a_closed_journal_go(
    own_redis: EmbeddedRedis, admin: aioredis.Redis, keystore: Pkcs11KeyStore, tmp_path: Path
) -> None:
    """Two challenges opened, nothing sealed yet; maxmemory 1 byte; one cancelled (which runs out of memory):
    a sealer takes the lease, seals and archives the waiting entries, indexes both openings, lets the
    cancelled challenge's journal go and notes the open one's kept; its next step seals the openings' entries
    and the feeds and seals are empty (before: the step refused, OutOfMemoryError, nothing sealed)."""
    store = RedisState.from_url(own_redis.url)
    try:
        cancelled, kept = await opened(store, range(1, 3))
        await full(admin)
        await store.challenges.cancel_challenge(cancelled.challenge_id, datetime.now(UTC), RequestContext())
        sealer = sealer_of(store, keystore, tmp_path)
        assert await sealer.step() is not None
        keys = store.keys
        assert await admin.exists(keys.challenge_journal(cancelled.challenge_id)) == 0
        assert await admin.exists(keys.challenge_journal(kept.challenge_id)) == 1
        noted = await admin.zrange(keys.journal_kept(), 0, -1)
        assert noted == [keys.challenge_journal(kept.challenge_id).encode()]
        assert await admin.zcard(keys.user_evidence("u-1")) == 2
        assert await sealer.step() is not None  # the two entries of the user's openings journal
        assert await sealer.step() is None
        assert [await admin.xlen(feed) for feed in keys.journal_feeds()] == [0] * len(keys.journal_feeds())
        assert await admin.xlen(keys.journal_seals()) == 0
    finally:
        await store.close()


async def closed_out_of_memory(
    store: RedisState, sealer: Sealer, fill: Callable[[], Awaitable[None]], count: int
) -> list[Challenge]:
    """`count` challenges opened and sealed with memory (what was there before memory ran out), then Redis
    filled and each cancelled out of memory: the challenges."""
    challenges = await opened(store, range(1, count + 1))
    while await sealer.step() is not None:
        pass
    await fill()
    for challenge in challenges:
        await store.challenges.cancel_challenge(challenge.challenge_id, datetime.now(UTC), RequestContext())
    return challenges


async def test_out_of_memory_the_sealer_frees_more_than_it_writes(
    own_redis: EmbeddedRedis, admin: aioredis.Redis, keystore: Pkcs11KeyStore, tmp_path: Path
) -> None:
    """Challenges opened and sealed with memory; maxmemory 1 byte; each cancelled (out of memory): the
    sealer's steps out of memory let their journals and the sealed entries go, and Redis's keys take less
    than before them (before: refused, and Redis held all of it)."""
    store = RedisState.from_url(own_redis.url)
    try:
        sealer = sealer_of(store, keystore, tmp_path)
        challenges = await closed_out_of_memory(store, sealer, lambda: full(admin), CLOSED)
        before = await stored(admin)
        while await sealer.step() is not None:
            pass
        journals = [store.keys.challenge_journal(c.challenge_id) for c in challenges]
        assert [await admin.exists(journal) for journal in journals] == [0] * CLOSED
        after = await stored(admin)
        assert after < before, (before, after)
    finally:
        await store.close()


async def test_out_of_memory_the_sealer_lets_the_closed_journals_go_on_a_cluster(
    keystore: Pkcs11KeyStore, tmp_path: Path
) -> None:
    """The same on a cluster, where every script carries a shebang (bare `#!lua` but for those flagged
    `allow-oom`), which Redis refuses whole out of memory, a first write that frees included: the closed
    challenges' journals leave Redis, the feeds and the seals are empty (before: refused, all of it kept)."""
    with LoopbackCluster(tmp_path / "cluster") as cluster:
        store = RedisState.from_url(cluster.url)
        nodes = [aioredis.Redis(port=node.port) for node in cluster.nodes]
        client = connect(cluster.url, timeout=5.0)

        async def fill() -> None:
            for node in nodes:
                await full(node)

        try:
            sealer = sealer_of(store, keystore, tmp_path)
            challenges = await closed_out_of_memory(store, sealer, fill, 4)
            while await sealer.step() is not None:
                pass
            journals = [store.keys.challenge_journal(c.challenge_id) for c in challenges]
            assert [await client.exists(journal) for journal in journals] == [0] * len(journals)
            feeds = store.keys.journal_feeds()
            assert [await client.xlen(feed) for feed in feeds] == [0] * len(feeds)
            assert await client.xlen(store.keys.journal_seals()) == 0
        finally:
            for node in nodes:
                await node.config_set("maxmemory", 0)
                await node.aclose()
            await client.aclose()
            await store.close()

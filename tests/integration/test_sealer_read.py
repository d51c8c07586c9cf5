"""What a seal reads of the feeds: about one block, shared out between the shards (decision 0070).

Every shard's feed was read up to a block's entries to keep one block of them: with 16 shards and a backlog,
16 blocks' worth of entries held at once, which left the worker sealing the journal ~35 MB above the other
(the allocator kept the memory). The read is now shared out by the feeds' lengths; a shard read short bounds
the rest, so a block is still the oldest entries waiting, every one once, in order. Real Redis.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from sesame.clients import redis_journal
from sesame.clients.redis_journal import READ_SLACK, RedisJournal, Unsealed
from sesame.clients.redis_store import RedisState
from sesame.server.domain.model import RequestContext
from tests.factories import a_challenge, its_user_enrolled
from tests.support.shards import one_shard

pytestmark = pytest.mark.integration

BLOCK = 64


async def _opened(store: RedisState, users: int, challenges: int, first: int = 0) -> None:
    """`challenges` challenges opened, spread over `users` users (1: over users of u-0's shard, 32 each, as a
    user holds at most 64 open: decision 0095), their nonces numbered from `first`."""
    now = datetime.now(UTC)
    names = one_shard("u-0", -(-challenges // 32)) if users == 1 else [f"u-{k}" for k in range(users)]
    for n in range(first, first + challenges):
        challenge = a_challenge(now, nonce=n.to_bytes(16, "big"))
        challenge = dataclasses.replace(challenge, user_id=names[n % len(names)])
        await store.challenges.open_challenge(await its_user_enrolled(store, challenge), RequestContext())


async def _every_entry(store: RedisState, redis_client: Any) -> list[str]:
    """Every feed entry's id, oldest first, as Redis holds them."""
    ids = []
    for feed in store.keys.journal_feeds():
        raw = cast("list[tuple[bytes, object]]", await redis_client.xrange(feed))
        ids += [entry_id.decode() for entry_id, _ in raw]
    return sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


class _Counted:
    """How many entries the journal parsed from Redis's replies (the reads themselves are real)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entries = 0
        parse = redis_journal._feed_entries

        def counting(raw: Any) -> list[redis_journal.FeedEntry]:
            parsed = parse(raw)
            self.entries += len(parsed)
            return parsed

        monkeypatch.setattr(redis_journal, "_feed_entries", counting)


async def _all_blocks(journal: RedisJournal) -> list[Unsealed]:
    after, blocks = "", []
    while True:
        block = await journal.unsealed(after, BLOCK)
        if not block.entries:
            return blocks
        blocks.append(block)
        after = block.entries[-1].id


@pytest.mark.parametrize("users", [40, 1], ids=["spread over the shards", "one shard"])
async def test_a_backlog_is_read_a_block_at_a_time_oldest_first_every_entry_once(
    redis_store: RedisState, redis_client: Any, monkeypatch: pytest.MonkeyPatch, users: int
) -> None:
    """A backlog of many blocks, in most shards or in one: each read parses about one block (not a block per
    shard), the blocks come full until the last, and together they are every entry, once, oldest first."""
    await _opened(redis_store, users, 6 * BLOCK)
    expected = await _every_entry(redis_store, redis_client)
    shards = len(redis_store.keys.journal_feeds())
    counted = _Counted(monkeypatch)
    blocks = await _all_blocks(redis_store.sealed_journal())
    sealed = [e.id for block in blocks for e in block.entries]
    assert sealed == expected
    assert [len(b.entries) for b in blocks[:-1]] == [BLOCK] * (len(blocks) - 1)
    assert all(b.more for b in blocks[:-1])
    assert counted.entries <= len(blocks) * (BLOCK + shards * READ_SLACK)
    assert counted.entries < len(blocks) * BLOCK * shards // 4  # every shard read up to a block: 16 blocks


async def test_a_read_that_stops_short_in_one_shard_bounds_the_others(
    redis_store: RedisState, redis_client: Any
) -> None:
    """One shard far busier than the others: its read stops short of its entries, and no entry of another
    shard later than its last one read is sealed before it (a block is a prefix of every entry, by id)."""
    await _opened(redis_store, 1, 4 * BLOCK)  # in u-0's shard: a backlog
    await _opened(redis_store, 40, 40, first=4 * BLOCK)  # then one entry or so in most shards, all later
    expected = await _every_entry(redis_store, redis_client)
    first = await redis_store.sealed_journal().unsealed("", BLOCK)
    assert [e.id for e in first.entries] == expected[: len(first.entries)]
    assert first.more

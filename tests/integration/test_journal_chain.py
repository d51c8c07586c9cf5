"""Every journal entry is numbered in its stream, names its predecessor and is fed to the sealer (0027)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_store import RedisState
from sesame.server.domain.model import RequestContext
from tests.factories import a_challenge, its_user_enrolled

pytestmark = pytest.mark.integration


async def _entries(client: aioredis.Redis, key: str) -> list[tuple[str, dict[str, str]]]:
    raw = await client.xrange(key)
    return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()}) for i, f in raw]


async def test_entries_are_numbered_linked_and_fed_to_the_sealer(redis_client: aioredis.Redis):
    store = RedisState.on(redis_client)
    now = datetime.now(UTC)
    challenge = await its_user_enrolled(store, a_challenge(now))
    await store.challenges.open_challenge(challenge, RequestContext())
    await store.challenges.cancel_challenge(challenge.challenge_id, now, RequestContext())
    stream = store.keys.challenge_journal(challenge.challenge_id)
    entries = await _entries(redis_client, stream)
    assert [fields["seq"] for _, fields in entries] == ["1", "2"]
    assert [fields["prev"] for _, fields in entries] == ["0-0", entries[0][0]]
    # The feed of the user's shard, in the same slot as the stream (decision 0044).
    feed = dict(await _entries(redis_client, stream.split("}")[0] + "}:feed"))
    for entry_id, fields in entries:  # the same id, the same fields, and the stream it went to
        assert feed[entry_id] == {"stream": stream, **fields}
    assert await store.journal.challenge_journal(challenge.challenge_id) == [fields for _, fields in entries]
    (enrolled,) = await _entries(redis_client, store.keys.user_journal(challenge.user_id))
    assert "seq" in enrolled[1]  # numbered too, but a reader of the user's events does not see it
    assert all("seq" not in entry for entry in await store.users.user_journal(challenge.user_id))


async def test_a_deleted_last_entry_leaves_a_gap_before_the_next(redis_client: aioredis.Redis):
    """XDEL lowers neither the count of entries ever added nor the last id: the next entry says so."""
    store = RedisState.on(redis_client)
    now = datetime.now(UTC)
    challenge = await its_user_enrolled(store, a_challenge(now))
    await store.challenges.open_challenge(challenge, RequestContext())
    stream = store.keys.challenge_journal(challenge.challenge_id)
    ((opened_id, _),) = await _entries(redis_client, stream)
    await redis_client.xdel(stream, opened_id)
    await store.challenges.cancel_challenge(challenge.challenge_id, now, RequestContext())
    ((_, cancel),) = await _entries(redis_client, stream)
    assert (cancel["seq"], cancel["prev"]) == ("2", opened_id)


async def test_the_numbering_is_kept_in_the_tail_and_read_from_the_stream_without_it(
    redis_client: aioredis.Redis,
):
    """Each append keeps seq and prev in the stream's tail (decision 0040), and no append of a flow reads the
    stream's XINFO; a stream whose tail is gone (written before tails were kept) is numbered from XINFO."""
    store = RedisState.on(redis_client)
    now = datetime.now(UTC)
    challenge = await its_user_enrolled(store, a_challenge(now))
    before = await redis_client.info("commandstats")
    await store.challenges.open_challenge(challenge, RequestContext())
    after = await redis_client.info("commandstats")
    stream = store.keys.challenge_journal(challenge.challenge_id)
    tail = store.keys.journal_tail(stream)
    ((opened_id, _),) = await _entries(redis_client, stream)
    assert await redis_client.hgetall(tail) == {b"seq": b"1", b"prev": opened_id.encode()}
    xinfo = "cmdstat_xinfo|stream"
    assert after.get(xinfo, {}).get("calls", 0) == before.get(xinfo, {}).get("calls", 0)
    await redis_client.delete(tail)
    await store.challenges.cancel_challenge(challenge.challenge_id, now, RequestContext())
    (_, (_, cancel)) = await _entries(redis_client, stream)
    assert (cancel["seq"], cancel["prev"]) == ("2", opened_id)
    assert await redis_client.hget(tail, "seq") == b"2"

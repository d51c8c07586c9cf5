"""How the Redis store lays out its keys, how long it keeps them, and how it fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.server.domain.challenges import user_tag
from sesame.server.domain.errors import ConfigurationError, StoreUnavailable
from sesame.server.domain.model import RequestContext
from tests.factories import a_challenge, a_user, its_user_enrolled

pytestmark = pytest.mark.integration

CHALLENGE_ID = a_challenge(datetime.now(UTC)).challenge_id


async def test_keys_carry_the_hash_tag_of_their_aggregate(redis_client: aioredis.Redis):
    """A user, its pending index, its challenges and their journals live in its shard's place {s:<n>}, n from
    the user id's tag t (decision 0044); with the journal's feed and the SMS queued for the challenge in the
    outbox (docs/decisions/0025, 0027)."""
    store = RedisState.on(redis_client, prefix="bank")
    now = datetime.now(UTC)
    await store.users.register_user(a_user(now))
    await store.challenges.open_challenge(a_challenge(now), RequestContext())
    tag = user_tag("u-1")
    assert CHALLENGE_ID.endswith(f".u{tag}")
    shard = int(tag, 16) % 16
    assert sorted(await redis_client.keys("*")) == [
        f"bank:{{s:{shard}}}:ch:{CHALLENGE_ID}".encode(),
        f"bank:{{s:{shard}}}:ch:{CHALLENGE_ID}:journal".encode(),
        f"bank:{{s:{shard}}}:ch:{CHALLENGE_ID}:journal:tail".encode(),  # its numbering (decision 0040)
        f"bank:{{s:{shard}}}:feed".encode(),  # entries not sealed yet (docs/decisions/0027)
        f"bank:{{s:{shard}}}:feed:last".encode(),  # the feed's last id (decision 0044)
        f"bank:{{s:{shard}}}:journal:u-1".encode(),
        f"bank:{{s:{shard}}}:journal:u-1:tail".encode(),
        f"bank:{{s:{shard}}}:outbox".encode(),
        f"bank:{{s:{shard}}}:pending:u-1".encode(),
        f"bank:{{s:{shard}}}:user:u-1".encode(),
    ]


@pytest.mark.parametrize("aggregate", ["user", "client"])
def test_an_aggregate_and_its_journal_share_a_cluster_slot(redis_client: aioredis.Redis, aggregate: str):
    """Every key of an aggregate hashes to one Redis Cluster slot; a user's challenges are in its slot."""
    keys = RedisState.on(redis_client).keys
    names = {
        "user": [
            keys.user("u-1"),
            keys.user_journal("u-1"),
            keys.user_changes("u-1"),
            keys.user_pending("u-1"),
            keys.start_request("u-1", "r-1"),
            keys.resend_request("u-1", "r-1"),
            keys.send_budget("user", "u-1"),
            keys.challenge(CHALLENGE_ID),
            keys.challenge_journal(CHALLENGE_ID),
            keys.challenge_refusals(CHALLENGE_ID),
            *(prefix + "u-1" for prefix in keys.user_keys_beside(CHALLENGE_ID)),
            keys.outbox_of(CHALLENGE_ID),
            keys.dead_letters_of(CHALLENGE_ID),
            keys.place_of_challenge(CHALLENGE_ID) + ":feed",
        ],
        "client": [keys.client("acme"), keys.client_users("acme"), keys.client_journal("acme")],
    }[aggregate]
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_the_user_keys_a_script_builds_are_the_users(redis_client: aioredis.Redis):
    """The names a script builds from a challenge and the user id it stores are the user's own keys."""
    keys = RedisState.on(redis_client).keys
    hash_prefix, journal_prefix = keys.user_keys_beside(CHALLENGE_ID)
    assert (hash_prefix + "u-1", journal_prefix + "u-1") == (keys.user("u-1"), keys.user_journal("u-1"))


async def test_challenge_expires_retention_after_its_expiry(redis_client: aioredis.Redis):
    """The challenge hash is purged at expiry plus retention, an absolute time from the challenge itself."""
    store = RedisState.on(redis_client, retention=timedelta(hours=2))
    challenge = await its_user_enrolled(store, a_challenge(datetime.now(UTC)))
    await store.challenges.open_challenge(challenge, RequestContext())
    expire_ms = await redis_client.pexpiretime(store.keys.challenge(CHALLENGE_ID))
    purge_at = challenge.expires_at + timedelta(hours=2)
    assert expire_ms == int(purge_at.timestamp() * 1000)


async def test_registry_and_journals_do_not_expire(redis_client: aioredis.Redis):
    """The user hash and both journal streams carry no TTL."""
    store = RedisState.on(redis_client)
    now = datetime.now(UTC)
    await store.users.register_user(a_user(now))
    await store.challenges.open_challenge(a_challenge(now), RequestContext())
    keys = [
        store.keys.user("u-1"),
        store.keys.user_journal("u-1"),
        store.keys.challenge_journal(CHALLENGE_ID),
    ]
    assert [await redis_client.ttl(key) for key in keys] == [-1, -1, -1]


async def test_stopped_redis_raises_store_unavailable(tmp_path: Path):
    """Once its Redis is gone the store raises StoreUnavailable, not a redis-py exception."""
    server = EmbeddedRedis(tmp_path / "gone")
    server.start()
    store = RedisState.from_url(server.url, timeout=0.5)
    await store.users.register_user(a_user(datetime.now(UTC)))
    server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            await store.users.get_user("u-1")
        with pytest.raises(StoreUnavailable):
            await store.challenges.open_challenge(a_challenge(datetime.now(UTC)), RequestContext())
    finally:
        await store.close()


async def test_unreachable_redis_raises_store_unavailable(tmp_path: Path):
    """A store whose Redis never answered raises StoreUnavailable on its first call."""
    server = EmbeddedRedis(tmp_path / "never")
    server.start()
    url = server.url
    server.stop()
    store = RedisState.from_url(url, timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await store.challenges.get_challenge(CHALLENGE_ID)
    finally:
        await store.close()


async def test_keys_laid_out_in_another_shard_count_are_refused_at_boot(redis_client: aioredis.Redis):
    """The first boot records the shard count; a build with another count finds its users nowhere, and so
    refuses to start on that Redis (decision 0044)."""
    store = RedisState.on(redis_client)
    await store.check_layout()
    await store.check_layout()  # the same count again: fine
    assert await redis_client.get(store.keys.layout()) == b"16"
    await redis_client.set(store.keys.layout(), 8)  # as a build with 8 shards would have left it
    with pytest.raises(ConfigurationError, match="laid out in 8 shards"):
        await store.check_layout()

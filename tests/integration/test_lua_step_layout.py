"""What the scripts write that only Redis holds, kept as it was when they were made cheaper (decision 0061):
the members and the expiry of the send budgets' sorted sets, the expiry of held sets and hold records, and
the sealer's read of a feed longer than its batch. The fakes have no expiry: these run on Redis only. The
present is Redis's wall clock (expiries), never a fixed date."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
import redis.asyncio as aioredis

from sesame.clients import redis_records as rec
from sesame.clients.redis_store import RedisState
from sesame.server.domain.budgets import BudgetSubject, Charge, Hold, Spending
from sesame.server.domain.model import RequestContext
from tests import factories

pytestmark = pytest.mark.integration

USER = BudgetSubject.user("u-1")
NUMBER = BudgetSubject.phone("+33612345678")
EVERYONE = BudgetSubject.overall()
WINDOW = timedelta(hours=1)
GRACE = timedelta(seconds=10)
SLACK_MS = 1_000  # how far Redis's clock may move between a test's reading and its step
_nonces = itertools.count(1)


def now() -> datetime:
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


async def opened(store: RedisState, at: datetime, *charges: Charge) -> str:
    """Open a new challenge at `at` with these charges; its id."""
    challenge = factories.a_challenge(at, nonce=next(_nonces).to_bytes(16, "big"))
    await factories.its_user_enrolled(store, challenge)
    await store.challenges.open_challenge(challenge, RequestContext(), charges)
    return challenge.challenge_id


def short(name: str) -> str:
    """A hold's name as Redis keeps it (redis_send_units._short)."""
    return hashlib.sha256(name.encode()).hexdigest()[:20]


async def test_units_taken_at_one_millisecond_are_named_after_their_sms(
    redis_store: RedisState, redis_client: aioredis.Redis
) -> None:
    """Three openings at one instant: three members, each its challenge's id (the SMS it paid for, decision
    0101), all scored at that instant; a resend without a hold name takes `<ms>-0`, unnamed."""
    at = now()
    ids = [await opened(redis_store, at, Charge(USER, 10, WINDOW)) for _ in range(3)]
    key = redis_store.keys.send_budget(USER.kind.value, USER.key)
    ms = rec.to_ms(at)
    members = await redis_client.zrange(key, 0, -1, withscores=True)
    assert sorted(members) == sorted((challenge_id.encode(), float(ms)) for challenge_id in ids)
    resend_at = at + timedelta(seconds=30)
    await redis_store.challenges.record_resend(
        ids[0], resend_at, RequestContext(), (Charge(USER, 10, WINDOW),)
    )
    assert await redis_client.zscore(key, f"{rec.to_ms(resend_at)}-0") == rec.to_ms(resend_at)


async def test_a_budget_expires_a_window_after_its_newest_unit(
    redis_store: RedisState, redis_client: aioredis.Redis
) -> None:
    """A unit taken later sets the budget's expiry; one taken after it at an earlier instant (a caller's clock
    behind) leaves the expiry at the newest unit's."""
    at = now()
    key = redis_store.keys.send_budget(USER.kind.value, USER.key)
    await opened(redis_store, at + timedelta(seconds=10), Charge(USER, 10, WINDOW))
    await opened(redis_store, at, Charge(USER, 10, WINDOW))
    # Given as a duration from the step's own instant, so within the few ms Redis's clock moved (0103).
    assert (
        abs(await redis_client.pexpiretime(key) - rec.to_ms(at + timedelta(seconds=10) + WINDOW)) < SLACK_MS
    )


async def test_a_worker_behind_redis_still_gives_a_budget_its_window(
    redis_store: RedisState, redis_client: aioredis.Redis
) -> None:
    """A worker whose clock is 90 s behind Redis's takes a unit of a one-minute ceiling: the set lives its
    minute on Redis's clock. As an absolute expiry on the worker's clock it was already past, and Redis
    deleted the ceiling as it was written (an outside audit: 8 SMS through a ceiling of 3; decision 0103)."""
    behind = now() - timedelta(seconds=90)
    await opened(redis_store, behind, Charge(EVERYONE, 3, timedelta(minutes=1)))
    key = redis_store.keys.send_budget(EVERYONE.kind.value, EVERYONE.key)
    assert 60_000 - SLACK_MS < await redis_client.pttl(key) <= 60_000


async def test_a_held_set_expires_a_grace_after_its_newest_hold(
    redis_store: RedisState, redis_client: aioredis.Redis
) -> None:
    """A held set lives a grace after each hold, a duration on Redis's clock (decision 0103); a hold never
    shortens a longer life."""
    at = now()
    held = redis_store.keys.send_units_held(NUMBER.kind.value, NUMBER.key)
    grace_ms = int(GRACE.total_seconds() * 1000)

    async def hold() -> int:
        taken = Hold(f"c{next(_nonces)}", at, at + timedelta(minutes=5), GRACE)
        await redis_store.send_units.take(taken, [Charge(NUMBER, 10, WINDOW)])
        return int(await redis_client.pttl(held))

    assert grace_ms - SLACK_MS < await hold() <= grace_ms
    await redis_client.pexpire(held, 60_000)
    assert 60_000 - SLACK_MS < await hold() <= 60_000
    await redis_client.pexpire(held, 1_000)
    assert grace_ms - SLACK_MS < await hold() <= grace_ms


async def test_a_spent_hold_keeps_only_its_mark_and_its_expiry(
    redis_store: RedisState, redis_client: aioredis.Redis
) -> None:
    """Spent, a hold's record is `.spent` alone, expiring when it did (as long as its challenge lives)."""
    at = now()
    hold = Hold("c-spent", at, at + timedelta(minutes=5), GRACE)
    await redis_store.send_units.take(hold, [Charge(NUMBER, 10, WINDOW), Charge(EVERYONE, 10, WINDOW)])
    record = redis_store.keys.send_hold(short(hold.name))
    expiry = await redis_client.pexpiretime(record)
    assert abs(expiry - rec.to_ms(hold.until)) < SLACK_MS  # a duration from the hold's instant (0103)
    spent_at = at + timedelta(seconds=1)
    assert await redis_store.send_units.spend(hold.name, NUMBER, spent_at, GRACE) is Spending.SPENT
    assert await redis_client.hgetall(record) == {b".spent": str(rec.to_ms(spent_at)).encode()}
    assert await redis_client.pexpiretime(record) == expiry


async def test_a_feed_longer_than_the_batch_gives_its_first_entries_and_keeps_its_last_id(
    redis_store: RedisState, redis_client: aioredis.Redis
) -> None:
    """With more entries than the batch, the read gives the oldest ones up to the batch and moves no feed's
    last id past what it holds; the next read gives the rest."""
    at = now()
    for _ in range(4):
        await opened(redis_store, at)  # one `challenge.opened` entry each, all in the user's shard
    journal = redis_store.sealed_journal()
    lengths = {feed: await redis_client.xlen(feed) for feed in redis_store.keys.journal_feeds()}
    [shard_feed] = [feed for feed, length in lengths.items() if length]
    assert lengths[shard_feed] >= 4  # and the user's enrolment
    raw = cast("list[tuple[bytes, object]]", await redis_client.xrange(shard_feed))
    ids = [entry_id.decode() for entry_id, _ in raw]
    last = await redis_client.get(f"{shard_feed}:last")
    first = await journal.unsealed("", limit=2)
    assert [entry.id for entry in first.entries] == ids[:2]
    assert first.more  # the batch was full
    assert await redis_client.get(f"{shard_feed}:last") == last  # the batch was full: nothing moved
    rest = await journal.unsealed(ids[1], limit=10)
    assert [entry.id for entry in rest.entries] == ids[2:]
    assert not rest.more

"""Delivery reports repeated or forged by the hundred, against a challenge the real server opened: what they
may write is bounded (a report that tells nothing new is journaled a few times at most, a challenge takes a
bounded number of message references), so a replaying or compromised Kannel cannot grow Redis or the
sealed journal without end."""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_keys import Keyspace
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started
from tests.support.kannel_fixtures import DlrReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPEATS = 300


async def _journaled(client: aioredis.Redis, challenge_id: str) -> int:
    return int(await client.xlen(Keyspace().challenge_journal(challenge_id)))


async def _reports(receiver: DlrReceiver, challenge_id: str, refs_and_states: list[tuple[str, str]]) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for ref, status in refs_and_states:
            params = {
                "challenge": challenge_id,
                "ref": ref,
                "status": status,
                "token": receiver.callback.token_for(challenge_id, ref),
            }
            answer = await http.get(receiver.url, params=params)
            assert answer.status_code == 200, answer.text


async def test_a_report_repeated_hundreds_of_times_is_journaled_a_bounded_number_of_times(
    live: Live, dlr_receiver: DlrReceiver, redis_client: aioredis.Redis
) -> None:
    """Delivered, then the same report and a stale one alternating 300 times: the challenge's journal and
    the journal's feed grow by a bounded few entries, not by one per report."""
    challenge_id, _ = await started(live, await enrolled(live))
    await _reports(dlr_receiver, challenge_id, [("kannel-1", "8"), ("kannel-1", "1")])
    journaled, fed = (
        await _journaled(redis_client, challenge_id),
        await _fed(redis_client),
    )
    await _reports(dlr_receiver, challenge_id, [("kannel-1", "1" if n % 2 else "8") for n in range(REPEATS)])
    assert await _journaled(redis_client, challenge_id) - journaled <= 16
    assert await _fed(redis_client) - fed <= 16
    assert (await live.store.challenges.get_challenge(challenge_id)).delivery.value == "delivered"


async def test_reports_for_hundreds_of_forged_references_do_not_grow_the_challenge(
    live: Live, dlr_receiver: DlrReceiver, redis_client: aioredis.Redis
) -> None:
    """300 references no message of the challenge ever had: the challenge's hash and journal stay bounded."""
    challenge_id, _ = await started(live, await enrolled(live))
    key = Keyspace().challenge(challenge_id)
    journaled = await _journaled(redis_client, challenge_id)
    await _reports(dlr_receiver, challenge_id, [(f"kannel-forged-{n}", "2") for n in range(REPEATS)])
    assert await _journaled(redis_client, challenge_id) - journaled <= 40
    assert len(await redis_client.hget(key, "messages") or b"") < 4096


async def _fed(redis_client: aioredis.Redis) -> int:
    """Entries waiting in the journal's feeds, every shard's (decision 0044)."""
    return sum([await redis_client.xlen(feed) for feed in Keyspace().journal_feeds()])

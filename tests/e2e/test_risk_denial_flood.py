"""Denied Starts repeated by the hundred: a denial charges no send budget, so nothing else bounded what a
loop of denied Starts (no request id, each a new attempt) appended to the user's sealed journal: one entry
of about 1 KiB each (1,000 denied Starts: 1,000 entries, +1.08 MB of Redis before archiving). The first
MAX_JOURNALED_DENIALS of a user's hour are journaled; later ones are counted, and the count is sealed with
the next denial journaled (decision 0050)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.clients.redis_keys import Keyspace
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, PHONE, enrolled, transfer
from tests.e2e.test_risk import _guarded, risk_denied  # noqa: F401 (_guarded: the fixture `guarded`)
from tests.support.camara_sim_swap import Operator
from tests.support.risk_reads import denials_in

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MAX_JOURNALED_DENIALS = 20  # per user and hour (open_challenge.lua)
LOOPED = 60


async def _denied(live: Live, user_id: str, times: int) -> None:
    for n in range(times):
        request = auth_pb.StartChallengeRequest(
            user_id=user_id, operation=transfer(amount_minor=1000 + n), context=CONTEXT
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await live.auth.StartChallenge(request)
        assert risk_denied(caught.value)["reasons"] == "SIM_SWAP"


async def test_a_loop_of_denied_starts_journals_a_bounded_number_then_seals_the_count(
    guarded: Live, operator: Operator, redis_client: aioredis.Redis
) -> None:
    """60 denied Starts in an hour: each answered RISK_DENIED, 20 journaled; an hour later the next denial
    is journaled with the 40 counted only."""
    user_id = await enrolled(guarded)
    operator.changes[PHONE] = datetime.now(UTC) - timedelta(hours=2)
    await _denied(guarded, user_id, LOOPED)
    assert len(denials_in(await guarded.store.users.user_journal(user_id))) == MAX_JOURNALED_DENIALS
    assert await _fed(redis_client) <= MAX_JOURNALED_DENIALS + 2
    guarded.clock.advance(timedelta(hours=1))
    await _denied(guarded, user_id, 1)
    denials = denials_in(await guarded.store.users.user_journal(user_id))
    assert len(denials) == MAX_JOURNALED_DENIALS + 1
    assert denials[-1]["unjournaled_before"] == str(LOOPED - MAX_JOURNALED_DENIALS)
    assert "unjournaled_before" not in denials[0]


async def _fed(redis_client: aioredis.Redis) -> int:
    """Entries waiting in the journal's feeds, every shard's (decision 0044)."""
    return sum([await redis_client.xlen(feed) for feed in Keyspace().journal_feeds()])

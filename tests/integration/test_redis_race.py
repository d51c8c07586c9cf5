"""Exactly one concurrent verification wins, against the real Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.model import (
    LockoutPolicy,
    RequestContext,
    VerificationAttempt,
    VerifyResult,
)
from tests.factories import a_challenge, its_user_enrolled

pytestmark = pytest.mark.integration

ROUNDS = 100
RACERS = 32


async def test_one_winner_among_concurrent_right_codes(redis_store: RedisState):
    """32 simultaneous right codes give one VERIFIED and 31 ALREADY_USED, a hundred times over."""
    now = datetime.now(UTC)
    for round_no in range(ROUNDS):
        challenge = a_challenge(now, user_id="u-race", nonce=round_no.to_bytes(16, "big"))
        await redis_store.challenges.open_challenge(
            await its_user_enrolled(redis_store, challenge), RequestContext()
        )
        attempt = VerificationAttempt(
            challenge.challenge_id, challenge.op_digest, True, now, RequestContext()
        )
        outcomes = await asyncio.gather(
            *(redis_store.challenges.record_verification(attempt, LockoutPolicy()) for _ in range(RACERS))
        )
        results = Counter(outcome.result for outcome in outcomes)
        assert results == {VerifyResult.VERIFIED: 1, VerifyResult.ALREADY_USED: RACERS - 1}, round_no
        assert (await redis_store.challenges.get_challenge(challenge.challenge_id)).attempts == 1

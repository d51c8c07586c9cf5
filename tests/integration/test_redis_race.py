"""Exactly one concurrent verification wins, against the real Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_store import RedisStateStore
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    RequestContext,
    VerificationAttempt,
    VerifyResult,
)
from sesame.server.domain.operation import Login

pytestmark = pytest.mark.integration

ROUNDS = 100
RACERS = 32


def _challenge(round_no: int, now: datetime) -> Challenge:
    return Challenge(
        challenge_id=f"{round_no:032x}.k1.d6",
        user_id="u-race",
        client_id="client-1",
        operation=Login(),
        nonce=round_no.to_bytes(16, "big"),
        key_version=1,
        digits=6,
        phone="+33612345678",
        locale="fr",
        created_at=now,
        expires_at=now + timedelta(minutes=5),
        max_attempts=3,
        attempts=0,
        status=ChallengeStatus.OPEN,
        delivery=DeliveryState.PENDING,
    )


async def test_one_winner_among_concurrent_right_codes(redis_store: RedisStateStore):
    """32 simultaneous right codes give one VERIFIED and 31 ALREADY_USED, a hundred times over."""
    now = datetime.now(UTC)
    for round_no in range(ROUNDS):
        challenge = _challenge(round_no, now)
        await redis_store.open_challenge(challenge, RequestContext())
        attempt = VerificationAttempt(
            challenge.challenge_id, challenge.op_digest, True, now, RequestContext()
        )
        outcomes = await asyncio.gather(*(redis_store.record_verification(attempt) for _ in range(RACERS)))
        results = Counter(outcome.result for outcome in outcomes)
        assert results == {VerifyResult.VERIFIED: 1, VerifyResult.ALREADY_USED: RACERS - 1}, round_no
        assert (await redis_store.get_challenge(challenge.challenge_id)).attempts == 1

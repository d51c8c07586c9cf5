"""SuspendUser racing VerifyChallenge, through the real server: the suspension says what it voided.

A Verify that lands after the suspension's step and before its voiding finds the user suspended, answers
VOIDED and marks the challenge void itself; the suspension's voiding then finds it closed. It answered
`voided_challenges` 0 although the code had been void from its step on (an outside audit: 56 of 200 rounds
with two workers). The step now counts what was open at that instant (decision 0102): whichever answers
first, a suspension voided the challenge exactly when the code was not verified before it.
"""

from __future__ import annotations

import asyncio

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import started, transfer, verify

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROUNDS = 16


async def _verified(live: Live, challenge_id: str, code: str) -> bool:
    """VERIFIED, or VOIDED when the suspension's step came first."""
    result = (await verify(live, challenge_id, code)).result
    assert result in (auth_pb.VERIFY_RESULT_VERIFIED, auth_pb.VERIFY_RESULT_VOIDED)
    return result == auth_pb.VERIFY_RESULT_VERIFIED


async def test_a_suspension_racing_a_verify_counts_the_code_it_voided(live: Live) -> None:
    for n in range(ROUNDS):
        user_id = f"user-{n}"
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=f"+336123456{n:02d}")
        )
        challenge_id, code = await started(live, user_id, transfer())
        suspension = enrol_pb.SuspendUserRequest(
            user_id=user_id, request_id=f"s-{n}", actor="ops", reason="vol"
        )
        verified, suspended = await asyncio.gather(
            _verified(live, challenge_id, code), live.enrol.SuspendUser(suspension)
        )
        assert suspended.voided_challenges == (0 if verified else 1), (n, verified)

"""A caller that gives up on a suspension or a change of number (its deadline passes, it cancels) after the
user's step does not leave the user's pending challenges OPEN.

The change is the user's own step, then one voiding step per pending challenge (decision 0010). gRPC cancels
the servicer when the caller gives up; cut between the steps, the challenges stayed OPEN until a retry
(through `make run`, 4 of 10 after a SuspendUser with a 4 ms deadline). Verify, Resend and the outbox refuse
them all the same (decision 0056), but GetChallenge showed them OPEN and the journal held no voiding. Through
the real server, Redis and SoftHSM; the voiding is slowed so that the caller's deadline passes after the
user's step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.clients.redis_challenges import RedisChallenges
from sesame.server.domain.lifecycle import Voiding, VoidOutcome
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def suspend(live: Live) -> object:
    request = enrol_pb.SuspendUserRequest(user_id="alice", request_id="s-1", actor="ops", reason="vol")
    return await live.enrol.SuspendUser(request, timeout=0.1)


async def override(live: Live) -> object:
    request = enrol_pb.OverrideSecurePhoneRequest(
        user_id="alice",
        new_phone="+33698765432",
        operator="agent-7",
        reason="lost",
        request_id="p-1",
        actor="bo",
    )
    return await live.enrol.OverrideSecurePhone(request, timeout=0.1)


async def status(live: Live, challenge_id: str) -> int:
    described = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    return described.challenge.status


@pytest.mark.parametrize("change", [suspend, override])
async def test_a_change_given_up_after_its_step_still_voids_the_pending_challenges(
    live: Live, monkeypatch: pytest.MonkeyPatch, change: Callable[[Live], Awaitable[object]]
) -> None:
    await enrolled(live)
    challenge_id, _ = await started(live, "alice")
    void = RedisChallenges.void_challenge

    async def slow_void(challenges: RedisChallenges, challenge_id: str, voiding: Voiding) -> VoidOutcome:
        await asyncio.sleep(0.3)  # the caller's deadline passes meanwhile, after the user's step
        return await void(challenges, challenge_id, voiding)

    monkeypatch.setattr(RedisChallenges, "void_challenge", slow_void)
    with pytest.raises(grpc.aio.AioRpcError) as given_up:
        await change(live)
    assert given_up.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # No retry: the voiding the change owes still runs.
    for _ in range(50):
        if await status(live, challenge_id) != auth_pb.CHALLENGE_STATUS_OPEN:
            break
        await asyncio.sleep(0.1)
    assert await status(live, challenge_id) == auth_pb.CHALLENGE_STATUS_VOIDED

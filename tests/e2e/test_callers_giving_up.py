"""What a caller that gives up (its deadline passed, or it cancelled) leaves behind (an outside audit, AG).

A call whose deadline had passed when it was read did all its work for a caller told DEADLINE_EXCEEDED: a
Start sent its SMS and spent a unit, a Verify consumed the right code. A fifth wrong code whose caller
cancelled left the user blocked and their other challenges open: a code of one of them verified after the
block. A call ended by its deadline was counted CANCELLED.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.clients.redis_challenges import RedisChallenges
from sesame.server.domain.lifecycle import Voiding, VoidOutcome
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, started, transfer, verify, wrong
from tests.support.console_sms import written
from tests.support.http2 import grpc_headers, sent_and_drained

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

START = "/sesame.api.v1.AuthenticationService/StartChallenge"
VERIFY = "/sesame.api.v1.AuthenticationService/VerifyChallenge"


async def _enrolled(live: Live, user_id: str, phone: str) -> None:
    await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=phone)
    )


def _answered(live: Live, method: str, code: str) -> float:
    labels = {"method": method.rsplit("/", 1)[1], "code": code}
    return live.metrics.registry.get_sample_value("sesame_rpc_requests_total", labels) or 0.0


async def _expired_on_arrival(live: Live, method: str, request: bytes) -> None:
    """`request` sent to `method` with a deadline of one nanosecond: past before the server reads it."""
    block = grpc_headers(method, live.address, ((b"grpc-timeout", b"1n"),))
    await asyncio.to_thread(sent_and_drained, live.address, block, 1, request)


async def test_a_start_past_its_deadline_on_arrival_sends_nothing(live: Live) -> None:
    await _enrolled(live, "late", "+33612345601")
    request = auth_pb.StartChallengeRequest(user_id="late", operation=transfer(), context=CONTEXT)
    before = _answered(live, START, "DEADLINE_EXCEEDED")
    for _ in range(3):
        await _expired_on_arrival(live, START, request.SerializeToString())
    assert _answered(live, START, "DEADLINE_EXCEEDED") == before + 3
    challenge_id, _ = await started(live, "late")  # the caller's retry: the only SMS, the only unit
    assert [sms["challenge_id"] for sms in written(live.sms_file) if sms["to"] == "+33612345601"] == [
        challenge_id
    ]


async def _status(live: Live, challenge_id: str) -> int:
    reply = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    return int(reply.challenge.status)


async def _attempts_left(live: Live, challenge_id: str) -> int:
    reply = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    return int(reply.challenge.attempts_left)


async def test_a_verify_past_its_deadline_on_arrival_leaves_the_code_to_its_retry(live: Live) -> None:
    await _enrolled(live, "slow", "+33612345602")
    challenge_id, code = await started(live, "slow")
    attempts = await _attempts_left(live, challenge_id)
    for submitted in (code, wrong(code)):
        request = auth_pb.VerifyChallengeRequest(
            challenge_id=challenge_id, code=submitted, operation=transfer(), context=CONTEXT
        )
        await _expired_on_arrival(live, VERIFY, request.SerializeToString())
    assert await _attempts_left(live, challenge_id) == attempts  # neither counted
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED


async def test_a_block_whose_caller_gave_up_still_voids_the_users_other_challenges(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fifth wrong code's deadline passes while the user's other challenges are voided (slowed here, as
    in test_lifecycle_given_up): they are voided all the same."""
    await _enrolled(live, "gives-up", "+33612345603")
    (first, code), (second, _), (third, _) = [await started(live, "gives-up") for _ in range(3)]
    for _ in range(3):
        await verify(live, first, wrong(code))
    await verify(live, second, wrong(code))
    void = RedisChallenges.void_challenge

    async def slow_void(challenges: RedisChallenges, challenge_id: str, voiding: Voiding) -> VoidOutcome:
        await asyncio.sleep(0.3)  # the caller's deadline passes meanwhile, after the block's step
        return await void(challenges, challenge_id, voiding)

    monkeypatch.setattr(RedisChallenges, "void_challenge", slow_void)
    fifth = auth_pb.VerifyChallengeRequest(
        challenge_id=second, code=wrong(code), operation=transfer(), context=CONTEXT
    )
    with pytest.raises(grpc.aio.AioRpcError) as given_up:
        await live.auth.VerifyChallenge(fifth, timeout=0.1)
    assert given_up.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    user = (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="gives-up"))).user
    assert user.HasField("blocked_until")
    for _ in range(100):  # no retry: the voiding the block owes still runs
        if await _status(live, third) != auth_pb.CHALLENGE_STATUS_OPEN:
            break
        await asyncio.sleep(0.05)
    assert await _status(live, third) == auth_pb.CHALLENGE_STATUS_VOIDED

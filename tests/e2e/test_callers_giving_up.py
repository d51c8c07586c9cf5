"""What a caller that gives up (its deadline passed, or it cancelled) leaves behind (an outside audit, AG).

A call whose deadline had passed when it was read did all its work for a caller told DEADLINE_EXCEEDED: a
Start sent its SMS and spent a unit, a Verify consumed the right code. A fifth wrong code whose caller
cancelled left the user blocked and their other challenges open: a code of one of them verified after the
block. A call ended by its deadline was counted CANCELLED.

Through the server, a deadline that passed before the request's message came is refused by gRPC or by the
servicer: nothing is done either way (the servicer's own refusal is tested over the flows, in
tests/unit/test_given_up_steps.py: a `grpc-timeout` of 1 ns reached it only sometimes).
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.clients.redis_challenges import RedisChallenges
from sesame.server.domain.lifecycle import Voiding, VoidOutcome
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, started, transfer, verify, wrong
from tests.support.console_sms import written
from tests.support.http2 import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    drained,
    frame,
    grpc_headers,
    grpc_message,
    opened,
)

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


def _sent_late(address: str, method: str, request: bytes) -> None:
    """`request` sent to `method` with a deadline of a millisecond, its message 50 ms after its headers: the
    deadline has passed for certain before the server can read it (gRPC then answers DEADLINE_EXCEEDED
    itself, or the servicer sees it passed)."""
    sock = opened(address)
    try:
        block = grpc_headers(method, address, ((b"grpc-timeout", b"1m"),))
        sock.sendall(frame(HEADERS, END_HEADERS, 1, block))
        time.sleep(0.05)
        sock.sendall(frame(DATA, END_STREAM, 1, grpc_message(request)))
        drained(sock)
    finally:
        sock.close()


async def _expired_on_arrival(live: Live, method: str, request: bytes) -> None:
    await asyncio.to_thread(_sent_late, live.address, method, request)


async def test_a_start_past_its_deadline_on_arrival_sends_nothing(live: Live) -> None:
    await _enrolled(live, "late", "+33612345601")
    request = auth_pb.StartChallengeRequest(user_id="late", operation=transfer(), context=CONTEXT)
    answered = [_answered(live, START, code) for code in ("OK", "CANCELLED")]
    for _ in range(3):
        await _expired_on_arrival(live, START, request.SerializeToString())
    # Refused by gRPC before the servicer, or by it as DEADLINE_EXCEEDED: never done, nor counted otherwise.
    assert [_answered(live, START, code) for code in ("OK", "CANCELLED")] == answered
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

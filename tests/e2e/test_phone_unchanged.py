"""StartChallenge for a change of number to the secure number itself sends no code.

ChangeSecurePhone can only answer such a change FAILED_PRECONDITION PHONE_UNCHANGED, yet Start opened its
challenge: a code sent to the user's phone for a change that could never be made, a unit of each send budget
spent, the request id taken. Start's one step now refuses it as ChangeSecurePhone does, against the number
stored as the challenge would open (open_challenge.lua), before anything is claimed, spent, written or sent.
"""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, PHONE, enrolled, precondition, snapshot, started
from tests.support.console_sms import written

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ONE_CODE = ChallengePolicy(send_budget=SendBudget(per_user=1, per_phone=1))


def _status(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str | None, bytes]:
    """The code, message and rich status (google.rpc.Status, its details) of a refusal."""
    return error.code(), error.details(), dict(error.trailing_metadata() or ())["grpc-status-details-bin"]


def _change_to(phone: str) -> auth_pb.StartChallengeRequest:
    """StartChallenge for a change of alice's number to `phone`, under the request id `r-1`."""
    change = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone=phone))
    return auth_pb.StartChallengeRequest(user_id="alice", operation=change, context=CONTEXT, request_id="r-1")


@pytest.mark.parametrize("policy", [ONE_CODE])
async def test_a_change_to_the_secure_number_is_refused_before_anything_is_spent(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """PHONE_UNCHANGED, the status OverrideSecurePhone answers for that number; nothing in Redis changed (no
    claim, unit, challenge, journal entry or outbox entry), no SMS. Then, under budgets of one code and the
    same request id, a change to another number opens and its code is sent."""
    await enrolled(live)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await live.auth.StartChallenge(_change_to(PHONE))
    assert precondition(refused.value) == "PHONE_UNCHANGED"
    assert await snapshot(redis_client) == before
    assert not live.sms_file.exists() or not live.sms_file.read_text().strip()
    with pytest.raises(grpc.aio.AioRpcError) as by_override:
        await live.enrol.OverrideSecurePhone(
            enrol_pb.OverrideSecurePhoneRequest(
                user_id="alice", new_phone=PHONE, operator="agent-7", reason="r", request_id="o-1", actor="bo"
            )
        )
    assert _status(refused.value) == _status(by_override.value)
    opened = await live.auth.StartChallenge(_change_to("+33698765432"))
    await read_code(live.sms_file, opened.challenge_id)
    sent = [(sms["challenge_id"], sms["to"]) for sms in written(live.sms_file)]
    assert sent == [(opened.challenge_id, PHONE)]


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=SendBudget(per_user=2, per_phone=2))])
async def test_a_refused_change_after_a_code_sent_gives_back_the_units_it_held(live: Live) -> None:
    """Once a code was sent, Start holds the number's, caller's and global units beside its step (decision
    0046): the refused change gives them back, so that under budgets of two codes a second code is sent."""
    await enrolled(live)
    first, _ = await started(live, "alice")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await live.auth.StartChallenge(_change_to(PHONE))
    assert precondition(refused.value) == "PHONE_UNCHANGED"
    second, _ = await started(live, "alice")
    assert [sms["challenge_id"] for sms in written(live.sms_file)] == [first, second]

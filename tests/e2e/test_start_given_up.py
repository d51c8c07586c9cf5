"""A caller that gives up on StartChallenge (its deadline passes, it cancels) after the step opened the
challenge does not leave that challenge without the hold of its send units.

Start is two scripts: the step (opens the challenge, takes the user's unit, queues the SMS) and the take of
the number's, caller's and global units (decision 0046); on a worker's first Start of a user they run one
after the other. gRPC cancels the servicer when the caller gives up; cancelled between the two, the take never
ran: the challenge stayed OPEN with its request id claimed, its SMS was dead-lettered `unheld` and never sent,
and the user's unit stayed spent (through `make run`, 33 of 200 Starts cancelled within 6 ms). A retry by the
request id within the hold's grace held the units again (decision 0062); a caller that gave up for good left
the user without a code. Through the real server, Redis and SoftHSM; the take is slowed so that the caller's
deadline passes between the two scripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.clients.redis_send_units import RedisSendUnits
from sesame.server.domain.budgets import Charge
from sesame.server.domain.send_holds import Hold
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, transfer, verify

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_a_start_given_up_between_its_step_and_its_take_still_sends_its_code(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    await enrolled(live)
    take = RedisSendUnits.take

    async def slow_take(
        units: RedisSendUnits, hold: Hold, charges: Sequence[Charge], dropping: Sequence[Charge] = ()
    ) -> None:
        await asyncio.sleep(0.3)  # the caller's deadline passes meanwhile, after the step
        await take(units, hold, charges, dropping)

    monkeypatch.setattr(RedisSendUnits, "take", slow_take)
    request = auth_pb.StartChallengeRequest(
        user_id="alice", operation=transfer(), context=CONTEXT, request_id="given-up-1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as given_up:
        await live.auth.StartChallenge(request, timeout=0.1)
    assert given_up.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    monkeypatch.setattr(RedisSendUnits, "take", take)
    # No retry: the challenge the step opened still gets its code to the phone, and it verifies.
    (challenge_id,) = await live.store.challenges.pending_challenges("alice", datetime.now(UTC))
    _, code = await read_code(live.sms_file, challenge_id, wait_seconds=5.0)
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED

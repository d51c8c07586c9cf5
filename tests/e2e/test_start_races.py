"""StartChallenge racing a change of the secure number, through the real server, Redis and SoftHSM (M4)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.grpc.demo import code_in
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, transfer, verify
from tests.support.console_sms import written

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TRIALS = 300
STARTS_PER_TRIAL = 3
IN_FLIGHT = 25  # trials run side by side: enough interleaving for the race, bounded for a 2-core machine
ROOMY = SendBudget(per_user=100, per_phone=100)


async def change_number(live: Live, user_id: str, new_phone: str) -> None:
    """Move the user's secure number as the back office does (the one place a test names that RPC)."""
    await live.enrol.OverrideSecurePhone(
        enrol_pb.OverrideSecurePhoneRequest(
            user_id=user_id,
            new_phone=new_phone,
            operator="agent-7",
            reason="téléphone perdu",
            request_id=f"move-{user_id}",
            actor="back-office",
        )
    )


async def start(live: Live, user_id: str) -> str | None:
    """Start a challenge for the default transfer: its id, or None when the server refused."""
    try:
        reply = await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
        )
    except grpc.aio.AioRpcError:
        return None
    challenge_id: str = reply.challenge_id
    return challenge_id


async def trial(live: Live, n: int) -> list[str]:
    """One user, one number change racing three starts; the ids of the challenges started."""
    user_id, old, new = f"racer-{n}", f"+336120{n:05d}", f"+336130{n:05d}"
    await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=old)
    )
    *ids, _ = await asyncio.gather(
        *(start(live, user_id) for _ in range(STARTS_PER_TRIAL)), change_number(live, user_id, new)
    )
    return [challenge_id for challenge_id in ids if challenge_id is not None]


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=ROOMY)])
async def test_no_code_sent_to_the_old_number_verifies_after_the_change(live: Live) -> None:
    """Over 300 races of a number change against three starts, no code sent to the old number verifies."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def bounded(n: int) -> list[str]:
        async with gate:
            return await trial(live, n)

    await asyncio.gather(*(bounded(n) for n in range(TRIALS)))
    # Every change has answered: a code the old number received must authorise nothing from now on.
    to_old = [
        message
        for message in written(live.sms_file)
        if message["challenge_id"] and message["to"].startswith("+336120")
    ]
    results = await asyncio.gather(*(verify(live, m["challenge_id"], code_in(m["text"])) for m in to_old))
    assert [r.result for r in results].count(auth_pb.VERIFY_RESULT_VERIFIED) == 0

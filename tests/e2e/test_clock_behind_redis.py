"""A worker whose clock is behind Redis's, through the real server (decision 0103).

Keys that a worker's instants expire (the caller's and global ceilings, the held units, the hold's record, a
request id's claim) were given absolute expiries on the worker's clock, which Redis counts on its own: a
worker 90 s behind wrote a one-minute ceiling already expired, and Redis deleted it as it was written (8 SMS
through a ceiling of 3); a worker 6 minutes behind wrote a hold already expired, and every code it opened was
dead-lettered `unheld`, never sent, while Start answered OK (an outside audit). The expiries are durations
now, measured on the worker's clock.

A worker that far off is taken out of service at its next health round (decision 0104); these are the clocks
that jumped after the last round (an hour apart here), for which the durations keep the ceilings.
"""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, transfer
from tests.support.console_sms import written
from tests.support.outbox import settled

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.parametrize("health_interval", [3600.0]),  # no round after the boot's
]

CEILING = SendBudget(per_user=100, per_phone=100, per_caller=3, overall=100)
USERS = 8


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=CEILING)])
async def test_a_worker_90_s_behind_keeps_the_callers_ceiling(live: Live) -> None:
    live.clock.skew(timedelta(seconds=-90))
    answers = []
    for n in range(USERS):
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=f"u-{n}", client_id="acme", secure_phone=f"+3361200000{n}")
        )
        try:
            await live.auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=f"u-{n}", operation=transfer())
            )
            answers.append("ok")
        except grpc.aio.AioRpcError as error:
            answers.append(error.code().name)
    await settled(live.store)
    assert answers == ["ok"] * 3 + ["RESOURCE_EXHAUSTED"] * (USERS - 3)
    assert sum(bool(sms["challenge_id"]) for sms in written(live.sms_file)) == 3


async def test_a_worker_6_minutes_behind_sends_its_codes(live: Live) -> None:
    live.clock.skew(timedelta(minutes=-6))
    await enrolled(live)
    started = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id="alice", operation=transfer(), context=CONTEXT)
    )
    await settled(live.store)
    assert [sms["challenge_id"] for sms in written(live.sms_file)] == [started.challenge_id]


async def test_a_retry_on_a_worker_6_minutes_behind_opens_one_challenge(live: Live) -> None:
    live.clock.skew(timedelta(minutes=-6))
    await enrolled(live)
    request = auth_pb.StartChallengeRequest(
        user_id="alice", operation=transfer(), context=CONTEXT, request_id="start-1"
    )
    first, retry = await live.auth.StartChallenge(request), await live.auth.StartChallenge(request)
    assert retry.challenge_id == first.challenge_id

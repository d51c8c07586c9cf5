"""What a caller sees when the SMS gateway fails (docs/api.md): the start answers, with delivery FAILED."""

from __future__ import annotations

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, transfer
from tests.support.outbox import settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_a_start_while_the_gateway_fails_answers_ok_with_delivery_failed(live: Live) -> None:
    """Not UNAVAILABLE: the challenge is open, its SMS queued, then FAILED: the caller resends or restarts."""
    user_id = await enrolled(live)
    live.sms_file.unlink()  # created at boot; a directory in its place: the console gateway cannot append
    live.sms_file.mkdir()
    reply = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
    )
    assert reply.delivery_state == auth_pb.DELIVERY_STATE_QUEUED
    await settled(live.store)
    described = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=reply.challenge_id))
    assert described.challenge.delivery_state == auth_pb.DELIVERY_STATE_FAILED
    assert described.challenge.status == auth_pb.CHALLENGE_STATUS_OPEN

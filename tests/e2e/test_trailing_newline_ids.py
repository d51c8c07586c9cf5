"""An id with a trailing newline is not an id: Python's `$` matches before a final newline, so `alice\\n`
passed the identifier check and was enrolled as a user of its own (its newline then in the journals, the
evidence and the tab-separated `sesame sms dead-letters`), and a challenge id with a newline passed as well
formed. Each is now INVALID_ARGUMENT on its field, nothing written."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import PHONE, enrolled, snapshot, started, violations

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_ids_with_a_trailing_newline_are_invalid_argument_and_write_nothing(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """EnrollUser with `alice\\n` or `acme\\n`, GetChallenge of an issued id plus a newline: refused on the
    field, Redis unchanged."""
    challenge_id, _ = await started(live, await enrolled(live, "alice"))
    before = await snapshot(redis_client)
    for user_id, client_id, field in (("alice\n", "acme", "user_id"), ("bob", "acme\n", "client_id")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await live.enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=user_id, client_id=client_id, secure_phone=PHONE)
            )
        assert set(violations(refused.value)) == {field}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id + "\n"))
    assert set(violations(refused.value)) == {"challenge_id"}
    assert await snapshot(redis_client) == before

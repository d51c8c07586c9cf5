"""ChangeSecurePhone by a verified challenge, through the real server, when the hosts' clocks disagree.

"No status or number change since the challenge opened" is the order of the steps, by the user's change
counts the challenge's opening read (decision 0056), not a comparison of the times the steps were stamped
with: one server whose clock the test moves stands for two hosts whose clocks disagree.
"""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, precondition
from tests.e2e.test_lifecycle import NEW_PHONE, change_phone, verified_change_phone

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SKEW = timedelta(minutes=1)


async def suspended_and_reinstated(live: Live, tag: str) -> None:
    """SuspendUser and ReinstateUser, stamped by the server's clock as it reads now."""
    await live.enrol.SuspendUser(
        enrol_pb.SuspendUserRequest(user_id="alice", request_id=f"s-{tag}", actor="ops-42", reason="vol")
    )
    await live.enrol.ReinstateUser(
        enrol_pb.ReinstateUserRequest(user_id="alice", request_id=f"r-{tag}", actor="ops-42")
    )


async def number(live: Live) -> str:
    return (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))).user.masked_phone


async def test_a_suspension_after_the_challenge_by_a_host_behind_voids_it(live: Live) -> None:
    """Verified, then the user suspended and reinstated by a host a minute behind: the change is refused
    (CHALLENGE_MISMATCH, the number kept). Compared by time, the suspension read as older than the challenge
    and the change went through, on a code that may have been read by whoever had the phone meanwhile."""
    await enrolled(live)
    challenge_id = await verified_change_phone(live)
    live.clock.advance(-SKEW)
    await suspended_and_reinstated(live, "behind")
    live.clock.advance(SKEW)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await change_phone(live, verified_challenge_id=challenge_id)
    assert precondition(caught.value) == "CHALLENGE_MISMATCH"
    assert await number(live) == "+33*******78"


async def test_a_suspension_before_the_challenge_by_a_host_ahead_does_not_void_it(live: Live) -> None:
    """Suspended and reinstated by a host a minute ahead, then a challenge opened and verified: the change
    goes through. Compared by time, the reinstatement read as newer than the challenge: refused."""
    await enrolled(live)
    live.clock.advance(SKEW)
    await suspended_and_reinstated(live, "ahead")
    live.clock.advance(-SKEW)
    challenge_id = await verified_change_phone(live)
    await change_phone(live, verified_challenge_id=challenge_id)
    assert await number(live) == NEW_PHONE[:3] + "*******" + NEW_PHONE[-2:]

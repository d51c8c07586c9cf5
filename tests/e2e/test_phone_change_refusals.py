"""A refused change of the secure number is journaled in the user's journal, through the real server.

An attempt on the secure number is what a dispute and a fraud team look for first: every refusal of
ChangeSecurePhone and OverrideSecurePhone for the user's status, or for a code that no longer authorises
the change, is decided in the change's step and journaled there (`user.change_phone`, outcome `refused` or
`mismatch`: decision 0102). Before, the flow refused the same on the user as it read it, and the journal
kept nothing of the attempt.
"""

from __future__ import annotations

import grpc
import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, precondition
from tests.e2e.test_lifecycle import change_phone, override, suspend, verified_change_phone

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def attempts(live: Live) -> list[dict[str, str]]:
    """The user's journal's change_phone entries, oldest first."""
    return [e for e in await live.store.users.user_journal("alice") if e["event"] == "user.change_phone"]


async def kept_number(live: Live) -> tuple[str, bool]:
    user = (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))).user
    return user.masked_phone, user.HasField("cooling_until")


async def test_a_change_for_a_user_suspended_since_the_code_is_journaled_refused(live: Live) -> None:
    """The code was verified, then the phone reported stolen: USER_STATUS, the number kept, and the user's
    journal says who tried what (the numbers masked)."""
    await enrolled(live)
    challenge_id = await verified_change_phone(live)
    await suspend(live)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await change_phone(live, verified_challenge_id=challenge_id)
    assert precondition(caught.value) == "USER_STATUS"
    assert await kept_number(live) == ("+33*******78", False)
    (entry,) = await attempts(live)
    assert (entry["outcome"], entry["status"], entry["method"], entry["challenge_id"]) == (
        "refused",
        "suspended",
        "challenge",
        challenge_id,
    )
    masked = (entry["old_phone"], entry["phone"], entry["cooling_until"])
    assert masked == ("+33*******78", "+33*******32", "0")


async def test_a_change_on_a_code_from_before_a_suspension_is_journaled_mismatch(live: Live) -> None:
    """Suspended and reinstated after the code was verified: the code authorises nothing now
    (CHALLENGE_MISMATCH), journaled as such."""
    await enrolled(live)
    challenge_id = await verified_change_phone(live)
    await suspend(live)
    await live.enrol.ReinstateUser(
        enrol_pb.ReinstateUserRequest(user_id="alice", request_id="r-1", actor="ops-42")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await change_phone(live, verified_challenge_id=challenge_id)
    assert precondition(caught.value) == "CHALLENGE_MISMATCH"
    assert await kept_number(live) == ("+33*******78", False)
    (entry,) = await attempts(live)
    assert (entry["outcome"], entry["status"], entry["challenge_id"]) == ("mismatch", "active", challenge_id)


async def test_an_override_for_a_revoked_user_is_journaled_refused(live: Live) -> None:
    """A revoked user's number never changes, not even by the back office: USER_STATUS, journaled with the
    operator and the reason."""
    await enrolled(live)
    await live.enrol.RevokeUser(enrol_pb.RevokeUserRequest(user_id="alice", request_id="v-1", actor="ops"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await override(live)
    assert precondition(caught.value) == "USER_STATUS"
    (entry,) = await attempts(live)
    assert (entry["outcome"], entry["status"], entry["method"], entry["operator"]) == (
        "refused",
        "revoked",
        "override",
        "agent-7",
    )

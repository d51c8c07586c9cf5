"""The order of the steps in a challenge's evidence, through the real server, when the `at` stamps disagree.

Two requests racing on two workers: a revocation stamped a few milliseconds before a verification whose
step ran first. The entries' `at` (each worker's clock, read before its step) then reads as if the code had
been verified after the revocation; the bundle states the order the steps ran, that of the seals (block,
then leaf), and that the stamps do not follow it (decision 0102). One server whose clock the test moves
back stands for the worker whose clock read earlier.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, transfer, verify
from tests.support.evidence_cli import bundle_from

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_a_revocation_stamped_before_a_verification_that_ran_first_comes_after_it(live: Live) -> None:
    await enrolled(live)
    challenge_id, code = await started(live, "alice", transfer())
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    live.clock.advance(-timedelta(seconds=1))  # the test clock runs: well behind what the verification read
    await live.enrol.RevokeUser(enrol_pb.RevokeUserRequest(user_id="alice", request_id="v-1", actor="ops"))
    assert live.sealer is not None
    await live.sealer.step()
    op = await bundle_from(live.address, challenge_id)
    order = op["l133_23"]["recorded"]["order_of_steps"]
    steps = [(step["part"], step["event"]) for step in order["steps"]]
    verified = steps.index(("journal", "challenge.verification"))
    revoked = steps.index(("lifecycle", "user.revoke"))
    assert steps[0] == ("lifecycle", "user.enrolled")
    assert verified < revoked
    stamps = order["steps"]
    assert stamps[revoked]["at"] < stamps[verified]["at"]  # the stamps say otherwise
    assert order["at_follows_order"] is False
    assert order["sealed"] == len(order["steps"])
    sealed = [(step["block"], step["leaf_index"]) for step in order["steps"]]
    assert sealed == sorted(sealed)


async def test_the_stamps_follow_the_order_when_nothing_raced(live: Live) -> None:
    await enrolled(live)
    challenge_id, code = await started(live, "alice", transfer())
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    live.clock.advance(timedelta(milliseconds=5))
    await live.enrol.RevokeUser(enrol_pb.RevokeUserRequest(user_id="alice", request_id="v-1", actor="ops"))
    assert live.sealer is not None
    await live.sealer.step()
    order = (await bundle_from(live.address, challenge_id))["l133_23"]["recorded"]["order_of_steps"]
    assert order["at_follows_order"] is True
    assert [step["part"] for step in order["steps"]][-1] == "lifecycle"

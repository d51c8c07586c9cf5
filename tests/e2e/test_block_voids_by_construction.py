"""A block voids the user's challenges open when it started, by construction (decision 0013), through the real
server and Redis.

Found from outside (AJ1): the block's step blocked the user and later steps voided the challenges open, one
round trip each; an UnblockUser landing in between lifted the only guard, and codes of challenges the block
should have voided answered VERIFIED (49 in 150 raced rounds). The block's step now counts as a change of the
user's standing (`status_changes`): every challenge opened before it answers VOIDED, whatever comes after.
"""

from __future__ import annotations

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.domain import challenges as challenge_flows
from sesame.server.domain.blocking import Block, after_block
from sesame.server.domain.ports import State
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify, wrong

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_a_challenge_open_at_the_block_is_void_after_an_unblock(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks: list[Block] = []

    async def not_yet(store: State, block: Block, **_: object) -> None:
        """The voiding steps after the block, not run yet: the unblock lands first."""
        blocks.append(block)

    monkeypatch.setattr(challenge_flows, "after_block", not_yet)
    await enrolled(live)
    kept, code = await started(live, "alice")
    for attempts in (3, 2):  # five wrong codes in a row, over two challenges
        challenge_id, right = await started(live, "alice")
        for _ in range(attempts):
            await verify(live, challenge_id, wrong(right))
    user = await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))
    assert user.user.HasField("blocked_until")
    unblocked = await live.enrol.UnblockUser(
        enrol_pb.UnblockUserRequest(user_id="alice", request_id="ub-1", actor="agent-7", reason="called back")
    )
    assert unblocked.unblocked
    assert (await verify(live, kept, code)).result == auth_pb.VERIFY_RESULT_VOIDED
    later, later_code = await started(live, "alice")  # a challenge opened after the unblock is good
    await after_block(live.store, blocks[0])  # even once the block's voiding, late, has run (AN3)
    assert (await verify(live, later, later_code)).result == auth_pb.VERIFY_RESULT_VERIFIED

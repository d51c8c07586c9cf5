"""The refusal counts of a challenge's evidence are signed with its extent, through the real server.

Only the first refusal of each kind is journaled (a replayed code after the verification, a code past the
lock...); the others are counted beside the journal, and a bundle showed the counts unsigned: an edit of them
went unseen by `sesame evidence --verify`. The answer's signed extent states them now (decision 0102): 57
replays made 0 fails the check, and an honest bundle still verifies.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.server.evidence_bundle import sections
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify
from tests.support.evidence_cli import bank_keys, bundle_from, verdict_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPLAYS = 4


async def test_an_edited_refusal_count_fails_the_check(live: Live, tmp_path: Path) -> None:
    challenge_id, code = await started(live, await enrolled(live))
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    for _ in range(REPLAYS):
        assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_ALREADY_USED
    assert live.sealer is not None
    await live.sealer.step()
    await live.sealer.step()
    bundle = await bundle_from(live.address, challenge_id)
    (counted,) = bundle["refusals"]
    assert int(counted["count"]) == REPLAYS
    stated = bundle["extents"][0]["statement"]
    assert stated["refusals"] == bundle["refusals"]
    jwks = bank_keys(bundle, tmp_path)
    status, checked = await verdict_of(bundle, jwks, tmp_path)
    assert status == 0, checked
    forged = copy.deepcopy(bundle)
    forged["refusals"] = []
    forged["l133_23"] = sections(forged)
    status, checked = await verdict_of(forged, jwks, tmp_path)
    assert status == 1, checked
    assert checked["operations"][0]["failed"].startswith("refusals: not the counts"), checked

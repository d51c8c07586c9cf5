"""A change of number's new number is masked wherever a challenge is described: GetChallenge, CancelChallenge
and the evidence bundle (decision 0134); the bundle stays sound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain.privacy import mask_phone
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, started, verify
from tests.support.evidence_cli import bank_keys, bundle_from, verdict_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NEW_PHONE = "+33633334444"
CHANGE = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone=NEW_PHONE))


async def test_get_challenge_masks_the_new_number(live: Live) -> None:
    """GetChallenge describes a change of number with its new number masked, as masked_phone is."""
    challenge_id, _ = await started(live, await enrolled(live), CHANGE)
    reply = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    assert reply.challenge.operation.change_phone.new_phone == mask_phone(NEW_PHONE)


async def test_cancel_challenge_masks_the_new_number(live: Live) -> None:
    """The cancelled challenge CancelChallenge answers holds the new number masked."""
    challenge_id, _ = await started(live, await enrolled(live), CHANGE)
    reply = await live.auth.CancelChallenge(
        auth_pb.CancelChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
    )
    assert reply.challenge.operation.change_phone.new_phone == mask_phone(NEW_PHONE)


async def test_the_evidence_of_a_change_of_number_holds_no_whole_number(live: Live, tmp_path: Path) -> None:
    """`sesame evidence` of a verified change of number: the new number shows nowhere whole, and the bundle
    is sound (offline too), its proof's operation digest not checkable against a masked operation."""
    challenge_id, code = await started(live, await enrolled(live), CHANGE)
    await verify(live, challenge_id, code, CHANGE)
    assert live.sealer is not None
    await live.sealer.step()
    bundle = await bundle_from(live.address, challenge_id)
    text = json.dumps(bundle)
    assert NEW_PHONE not in text
    assert NEW_PHONE[1:] not in text
    assert bundle["challenge"]["operation"]["change_phone"]["new_phone"] == mask_phone(NEW_PHONE)
    assert bundle["proof"]["verification"]["valid"] is True
    assert bundle["proof"]["verification"]["op_digest_matches_operation"] is None
    status, verdict = await verdict_of(bundle, bank_keys(bundle, tmp_path), tmp_path)
    assert status == 0, verdict

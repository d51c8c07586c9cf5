"""A bundle is one assembly (decision 0094): found from outside by an auditor who edited saved bundles. A
challenge's bundle whose user statement, lifecycle and health came from an older bundle of the same
challenge hid a suspension made since, and `sesame evidence --verify` accepted it; so did a bundle without
its first health note, and a selection whose `found` said another opening time or transaction. Through the
real server, Redis and SoftHSM.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.evidence_bundle import sections
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify
from tests.support.evidence_cli import bank_keys, bundle_from, last_hour_of, verdict_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def _verified_and_sealed(live: Live, user_id: str) -> str:
    """A transfer of the user's, its right code, and two sealer steps (the entries, then the blocks' index):
    the challenge id."""
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, code)
    assert live.sealer is not None
    await live.sealer.step()
    await live.sealer.step()
    return challenge_id


async def test_a_user_statement_from_an_older_bundle_fails(live: Live, tmp_path: Path) -> None:
    """A verified transfer's bundle, saved; the user suspended (the phone lost), sealed; the bundle again. The
    new bundle with the old one's user statement, lifecycle and health (sections drawn again) shows a user
    never suspended: each statement verifies and each part ends where its statement says, but the user's
    answer is older than the challenge's."""
    user_id = await enrolled(live)
    challenge_id = await _verified_and_sealed(live, user_id)
    old = await bundle_from(live.address, challenge_id)
    await live.enrol.SuspendUser(
        enrol_pb.SuspendUserRequest(user_id=user_id, request_id="r-1", actor="back-office", reason="perte")
    )
    assert live.sealer is not None
    await live.sealer.step()
    new = await bundle_from(live.address, challenge_id)
    jwks = bank_keys(new, tmp_path)
    for bundle in (old, new):
        status, checked = await verdict_of(bundle, jwks, tmp_path)
        assert status == 0, checked
    assert new["lifecycle"]["entries"][-1]["event"] == "user.suspend"
    assert old["lifecycle"]["entries"][-1]["event"] != "user.suspend"
    forged = copy.deepcopy(new)
    forged["extents"][1] = old["extents"][1]
    forged["lifecycle"], forged["health"] = old["lifecycle"], old["health"]
    forged["l133_23"] = sections(forged)
    status, checked = await verdict_of(forged, jwks, tmp_path)
    assert status == 1, checked
    assert checked["operations"][0]["failed"].startswith(
        "lifecycle: the statement of its extent is older than the journal's"
    ), checked


async def test_the_health_notes_cut_at_their_start_or_a_found_edited_fail(live: Live, tmp_path: Path) -> None:
    """The health notes' first note dropped (the last before the period: a `down` one would go unseen), and a
    selection's `found` with another opening time or transaction: each fails `--verify`."""
    notes = live.store.health_notes()
    now = datetime.now(UTC)
    await notes.note(now - timedelta(hours=3), "w-1", {"state store": False}, timedelta(days=1))
    # Another worker's note: w-1's `down` stays the last it said before the opening (decision 0163).
    await notes.note(now - timedelta(minutes=10), "w-2", {"state store": True}, timedelta(days=1))
    user_id = await enrolled(live)
    await _verified_and_sealed(live, user_id)
    bundle = await last_hour_of(live.address, user_id)
    jwks = bank_keys(bundle["operations"][0], tmp_path)
    status, checked = await verdict_of(bundle, jwks, tmp_path)
    assert status == 0, checked
    for edit, failure in (
        # fixed time: an edit of a bundle already taken, checked offline: no Redis step reads it
        (lambda b: b["found"][0].__setitem__("opened_at", "2026-01-01T00:00:00.000000Z"), "found: "),
        (lambda b: b["found"][0].__setitem__("transaction_id", "tx-other"), "found: "),
    ):
        edited = copy.deepcopy(bundle)
        edit(edited)
        status, checked = await verdict_of(edited, jwks, tmp_path)
        assert status == 1, checked
        assert checked["user"]["failed"].startswith(failure), checked
    op = bundle["operations"][0]
    health = op["health"]
    assert [n["state store"] for n in health["entries"]] == ["down", "up"]
    assert op["l133_23"]["no_technical_deficiency"]["every_dependency_up"] is False
    del health["entries"][0], health["inclusion_proofs"][0]
    op["l133_23"] = sections(op)
    assert op["l133_23"]["no_technical_deficiency"]["every_dependency_up"] is True
    status, checked = await verdict_of(op, jwks, tmp_path)
    assert status == 1, checked
    assert checked["operations"][0]["failed"].startswith("health: the notes start at entry"), checked


async def test_a_down_note_after_the_operation_says_nothing_of_it(live: Live, tmp_path: Path) -> None:
    """Found by an outside audit: a key store `down` a minute after a transfer was verified made that
    transfer's `every_dependency_up` false (and its PDF say "non"). Listed, not counted (decision 0163);
    the bundle still verifies."""
    notes = live.store.health_notes()
    await notes.note(datetime.now(UTC) - timedelta(minutes=10), "w-1", {"key store": True}, timedelta(days=1))
    user_id = await enrolled(live)
    await _verified_and_sealed(live, user_id)
    await notes.note(datetime.now(UTC) + timedelta(seconds=1), "w-1", {"key store": False}, timedelta(days=1))
    assert live.sealer is not None
    await live.sealer.step()
    await live.sealer.step()
    bundle = await last_hour_of(live.address, user_id)
    op = bundle["operations"][0]
    assert op["health"]["entries"][-1]["key store"] == "down"
    assert op["l133_23"]["no_technical_deficiency"]["every_dependency_up"] is True
    jwks = bank_keys(op, tmp_path)
    status, checked = await verdict_of(bundle, jwks, tmp_path)
    assert status == 0, checked
    # A bundle saved by a release before decision 0163 said `false` of the same notes: it still verifies
    # (an outside audit: every bundle saved before the upgrade failed); what neither rule says does not.
    for then, valid in ((False, True), (None, False)):
        saved = copy.deepcopy(op)
        saved["l133_23"]["no_technical_deficiency"]["every_dependency_up"] = then
        status, checked = await verdict_of(saved, jwks, tmp_path)
        assert (status == 0) is valid, checked

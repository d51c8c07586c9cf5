"""A saved bundle whose last block, with the entries at the end of a stream that it alone holds, is cut
off (decision 0091): the blocks are chained, so only a suffix of the chain can go, but that is enough to
hide a challenge's last attempts and its proof, or a user's last lifecycle entries. Through the real server,
Redis and SoftHSM.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server import bundle_extent
from sesame.server.domain.journal_seal import canonical, seal_from_dict
from sesame.server.evidence_bundle import risk_denials, sections
from sesame.server.journal_check import check_stream
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify, wrong
from tests.integration.test_offline_procedure import the_extent_check
from tests.support.evidence_cli import bank_keys, bundle_from, last_hour_of, verdict_of
from tests.unit.test_journal_seal import Signer

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _cut(holder: dict[str, Any], entries: str, number: int) -> int:
    """Remove from one part the entries block `number` proves, and the block; how many went. They must be
    the part's last (the chain lets only a suffix go)."""
    proofs = holder["inclusion_proofs"]
    gone = [i for i, p in enumerate(proofs) if p is not None and p["block"] == number]
    assert gone == list(range(len(proofs) - len(gone), len(proofs))), "not the stream's last entries"
    del holder[entries][len(proofs) - len(gone) :]
    del proofs[len(proofs) - len(gone) :]
    holder["signed_blocks"] = [b for b in holder["signed_blocks"] if b["block"]["number"] != number]
    return len(gone)


def _cut_operation(op: dict[str, Any], number: int) -> None:
    """A challenge's bundle without block `number`: its journal's, lifecycle's and health's entries in it,
    the seal given, the proof if its entry went; the checks and sections computed again as the server does."""
    _cut(op, "journal", number)
    for name in ("lifecycle", "health"):
        if isinstance(op.get(name), dict):
            _cut(op[name], "entries", number)
    given = op["journal_seals"]["given"]
    assert given["seals"][-1]["block"]["number"] == number
    given["seals"] = given["seals"][:-1]
    checked = check_stream(
        given["stream"], op["journal"], [seal_from_dict(s) for s in given["seals"]], given["jwks"]
    )
    op["journal_seals"] = {**checked.as_dict(), "given": given}
    if not any(e.get("event") == "challenge.proof" for e in op["journal"]):
        op["proof"] = None
    op["l133_23"] = sections(op)


def _last_block(holder: dict[str, Any]) -> int:
    return max(p["block"] for p in holder["inclusion_proofs"] if p is not None)


async def test_a_challenge_bundle_cut_after_its_last_sealed_block_fails(live: Live, tmp_path: Path) -> None:
    """A wrong code, sealed; the right code and the proof sealed in a block of their own. The saved bundle
    without that block (and those entries) shows a challenge never verified: --verify must fail."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, wrong(code))
    assert live.sealer is not None
    await live.sealer.step()
    await live.sealer.step()  # the openings journal's entry, journaled by the index step, sealed
    await verify(live, challenge_id, code)
    await live.sealer.step()
    bundle = await bundle_from(live.address, challenge_id)
    jwks = bank_keys(bundle, tmp_path)
    status, checked = await verdict_of(bundle, jwks, tmp_path)
    assert status == 0, checked
    last = _last_block(bundle)
    assert [
        e["event"]
        for e in bundle["journal"]
        if bundle["inclusion_proofs"][int(e["seq"]) - 1]["block"] == last
    ] == [
        "challenge.verification",
        "challenge.proof",
    ]
    _cut_operation(bundle, last)
    assert [e.get("outcome") for e in bundle["l133_23"]["authenticated"]["attempts"]] == ["wrong_code"]
    status, checked = await verdict_of(bundle, jwks, tmp_path)
    assert status == 1, checked
    assert "journal: the bundle ends at entry 3 of" in checked["operations"][0]["failed"], checked
    with pytest.raises(AssertionError, match="journal: the bundle ends at entry 3, the statement at 5"):
        the_extent_check()(bundle, jwks.read_text())


async def test_a_user_bundle_cut_after_the_lifecycles_last_block_fails(live: Live, tmp_path: Path) -> None:
    """The user suspended after a verified transfer, the suspension sealed in a block of its own. The user's
    bundle without it shows a user never suspended: --verify must fail."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, code)
    assert live.sealer is not None
    await live.sealer.step()
    await live.sealer.step()
    await live.enrol.SuspendUser(
        enrol_pb.SuspendUserRequest(user_id=user_id, request_id="r-1", actor="back-office", reason="vol")
    )
    await live.sealer.step()
    bundle = await last_hour_of(live.address, user_id)
    jwks = bank_keys(bundle["operations"][0], tmp_path)
    status, checked = await verdict_of(bundle, jwks, tmp_path)
    assert status == 0, checked
    last = _last_block(bundle["lifecycle"])
    assert bundle["lifecycle"]["entries"][-1]["event"] == "user.suspend"
    assert _cut(bundle["lifecycle"], "entries", last) == 1
    bundle["risk_denials"] = risk_denials(bundle["lifecycle"]["entries"], bundle["selector"])
    for op in bundle["operations"]:
        if any(p is not None and p["block"] == last for p in op["lifecycle"]["inclusion_proofs"]):
            _cut(op["lifecycle"], "entries", last)
            op["l133_23"] = sections(op)
    status, checked = await verdict_of(bundle, jwks, tmp_path)
    assert status == 1, checked
    assert "lifecycle: the bundle ends at entry" in checked["user"]["failed"], checked
    with pytest.raises(AssertionError, match="lifecycle: the bundle ends at entry"):
        the_extent_check()(bundle, jwks.read_text())


def _resigned(signed: dict[str, Any]) -> dict[str, Any]:
    """The statement signed again, under the bank's kid, with a key of the other side's."""
    said = signed["statement"]
    signature = Signer().sign(canonical(said))
    return {"statement": said, "signature": base64.urlsafe_b64encode(signature).decode().rstrip("=")}


async def test_a_statement_edited_resigned_or_removed_fails(live: Live, tmp_path: Path) -> None:
    """The untouched bundle verifies, with `sesame evidence --verify` and with the documented procedure; its
    journal's statement with a lower `seq`, signed again with another key, or removed, fails; the
    lifecycle's too."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, code)
    assert live.sealer is not None
    await live.sealer.step()
    await live.sealer.step()
    bundle = await bundle_from(live.address, challenge_id)
    jwks = bank_keys(bundle, tmp_path)
    status, checked = await verdict_of(bundle, jwks, tmp_path)
    assert status == 0, checked
    assert the_extent_check()(bundle, jwks.read_text()) is True
    journal_extent, user_extent = bundle["extents"]
    assert set(journal_extent["statement"]["streams"]) == {"journal"}
    assert journal_extent["statement"]["streams"]["journal"]["seq"] == len(bundle["journal"])
    assert bundle["l133_23"]["recorded"]["extent"]["ends_at_entry"] == len(bundle["journal"])
    assert user_extent["statement"]["subject"]["user_id"] == user_id
    assert bundle_extent.checked(user_extent, json.loads(jwks.read_text()))["kid"].startswith(
        "sesame-journal-v"
    )
    assert set(checked["keys_used"]) >= {journal_extent["statement"]["kid"]}

    def lowered(which: int) -> Any:
        def edit(b: dict[str, Any]) -> None:
            streams = b["extents"][which]["statement"]["streams"]
            name = "journal" if which == 0 else "lifecycle"
            streams[name]["seq"] -= 1

        return edit

    def resigned(which: int) -> Any:
        return lambda b: b["extents"].__setitem__(which, _resigned(b["extents"][which]))

    signature = "extent: the signature does not verify under 'sesame-journal-v"
    for tamper, failure in (
        (lowered(0), signature),
        (lowered(1), signature),
        (resigned(0), signature),
        (resigned(1), signature),
        (lambda b: b["extents"].pop(0), "journal: the bundle carries no signed statement of its extent"),
        (lambda b: b["extents"].pop(1), "lifecycle: the bundle carries no signed statement of its extent"),
        (lambda b: b.pop("extents"), "journal: the bundle carries no signed statement of its extent"),
    ):
        edited = copy.deepcopy(bundle)
        tamper(edited)
        status, checked = await verdict_of(edited, jwks, tmp_path)
        assert status == 1, checked
        assert checked["operations"][0]["failed"].startswith(failure), checked
        with pytest.raises(Exception):  # noqa: B017 (an assertion, a KeyError, or jwcrypto's)
            the_extent_check()(edited, jwks.read_text())

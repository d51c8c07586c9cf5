"""A saved bundle's parts are checked by their place in the file, and a selection must be whole, once each,
oldest first (decision 0147), through the real server, Redis and SoftHSM and `sesame evidence --verify`.

Found by an outside audit that tampered with real bundles and recomputed every derived field: an operation
of a user's selection given a selection's keys (`operations`, `found`...) escaped every check of a challenge
(an amount raised, a never-verified transfer shown verified with another's proof, and `--verify` said valid);
a selection that dropped an operation and said so in its recomputed `completeness` verified; one that listed
an operation twice, or in another order, verified; an inclusion proof's block written 3.5 put a verification
after a suspension sealed after it; a challenge's bundle without its L.133-23 sections verified.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.evidence_bundle import completeness, risk_denials, sections
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, transfer, verify
from tests.support.evidence_cli import bank_keys, bundle_from, last_hour_of, verdict_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

Tamper = Callable[[dict[str, Any]], None]


async def _disputed(live: Live, keys: Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """Alice's selection of the hour (a transfer verified, one never verified, then her suspension), the
    verified one's own bundle, and the bank's keys."""
    await enrolled(live)
    verified, code = await started(live, "alice", transfer(amount_minor=12500))
    assert (await verify(live, verified, code, transfer(amount_minor=12500))).result == (
        auth_pb.VERIFY_RESULT_VERIFIED
    )
    await started(live, "alice", transfer(amount_minor=999999, name="Eve EVIL"))
    await live.enrol.SuspendUser(
        enrol_pb.SuspendUserRequest(user_id="alice", request_id="s-1", actor="ops", reason="phone stolen")
    )
    assert live.sealer is not None
    await live.sealer.step()  # the entries, and the openings indexed and journaled
    await live.sealer.step()  # the openings journal's entries
    selection = await last_hour_of(live.address, "alice")
    alone = await bundle_from(live.address, verified)
    return selection, alone, bank_keys(selection["operations"][0], keys)


def _whole_again(selection: dict[str, Any]) -> None:
    """What an editor with the code recomputes after changing a selection's operations."""
    selection["found"] = [
        {"challenge_id": op["challenge_id"], "opened_at": _opened(op)["at"], "transaction_id": "tx-1"}
        for op in selection["operations"]
    ]
    openings = selection["openings"]["entries"]
    selection["completeness"] = completeness(openings, selection["found"], selection["selector"])


def _opened(op: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in op["journal"] if e["event"] == "challenge.opened")


def _disguised(op: dict[str, Any], selection: dict[str, Any]) -> None:
    """An operation made to read as a user's selection with nothing in it, as the audit made it: the subject
    of its own user's statement of extent as selector, the selection's openings, each derived part recomputed;
    and its amount raised."""
    said = next(e["statement"] for e in op["extents"] if "lifecycle" in e["statement"]["streams"])
    op.update(operations=[], found=[], user_id=said["subject"]["user_id"], selector=dict(said["subject"]))
    op["openings"] = copy.deepcopy(selection["openings"])
    op["completeness"] = completeness(op["openings"]["entries"], [], op["selector"])
    op["risk_denials"] = risk_denials(op["lifecycle"]["entries"], op["selector"])
    for shown in (op["operation_as_authorised"], op["l133_23"]["accounted_for"]["operation_as_authorised"]):
        shown["amount"]["amount_minor"] = 12500000


def _block_after(op: dict[str, Any]) -> None:
    """The verification's inclusion proof names block n + 0.5: read as block n, sorted after n."""
    index = next(i for i, e in enumerate(op["journal"]) if e["event"] == "challenge.verification")
    proof = op["inclusion_proofs"][index]
    proof["block"] = proof["block"] + 0.5
    op["l133_23"] = sections(op)


async def test_a_bundle_edited_and_made_consistent_again_is_refused(live: Live, tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    selection, alone, keys = await _disputed(live, tmp_path / "keys")
    code, verdict = await verdict_of(selection, keys, tmp_path)
    assert code == 0, verdict
    code, verdict = await verdict_of(alone, keys, tmp_path)
    assert code == 0, verdict
    removed = lambda s: (s["operations"].pop(1), _whole_again(s))  # noqa: E731
    twice = lambda s: (s["operations"].append(copy.deepcopy(s["operations"][0])), _whole_again(s))  # noqa: E731
    reversed_ = lambda s: (s["operations"].reverse(), _whole_again(s))  # noqa: E731
    cases: list[tuple[str, dict[str, Any], Tamper, str, str]] = [
        (
            "an operation disguised",
            selection,
            lambda s: _disguised(s["operations"][0], s),
            "op0",
            "holding operations",
        ),
        ("the top disguised", alone, lambda b: _disguised(b, selection), "user", "a challenge's own parts"),
        ("an operation left out", selection, removed, "user", "not the whole of the user's openings journal"),
        ("an operation twice", selection, twice, "user", "not each once, oldest first"),
        ("operations reordered", selection, reversed_, "user", "not each once, oldest first"),
        ("a block of 3.5", selection, lambda s: _block_after(s["operations"][0]), "op0", "not whole numbers"),
        (
            "no L.133-23",
            selection,
            lambda s: s["operations"][0].pop("l133_23"),
            "op0",
            "no L.133-23 sections",
        ),
    ]
    for name, pristine, tamper, where, failure in cases:
        edited = copy.deepcopy(pristine)
        tamper(edited)
        code, verdict = await verdict_of(edited, keys, tmp_path)
        said = verdict["user"] if where == "user" else verdict["operations"][0]
        assert code == 1, (name, json.dumps(verdict)[:2000])
        assert failure in str(said["failed"]), (name, said)

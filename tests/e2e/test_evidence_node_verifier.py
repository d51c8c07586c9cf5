"""An evidence bundle checked by a verifier written from docs/evidence.md alone, in Node.js with node:crypto
and no package (tests/support/verify_bundle.mjs, decision 0094): the real server's bundles verify, and an
edited one does not. Through the real server, Redis and SoftHSM."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify, wrong
from tests.support.evidence_cli import bank_keys, bundle_from, last_hour_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

VERIFIER = Path(__file__).parents[1] / "support" / "verify_bundle.mjs"


def _node_verdict(bundle: dict[str, Any], jwks: Path, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: `make test` installs npm (which brings node) when it is missing")
    saved = tmp_path / "bundle.json"
    saved.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
    done = subprocess.run(
        [node, str(VERIFIER), str(saved), "--jwks", str(jwks)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


async def test_the_node_verifier_accepts_the_servers_bundles_and_refuses_an_edit(
    live: Live, tmp_path: Path
) -> None:
    """A transfer with a wrong code and the right one, sealed: its bundle and the user's selection verify
    in Node; the wrong code turned into `verified`, or the user's statement replaced by the selection's,
    do not."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, wrong(code))
    await verify(live, challenge_id, code)
    assert live.sealer is not None
    await live.sealer.step()
    await live.sealer.step()
    bundle = await bundle_from(live.address, challenge_id)
    selection = await last_hour_of(live.address, user_id)
    jwks = bank_keys(bundle, tmp_path)
    for whole in (bundle, selection):
        status, verdict = await asyncio.to_thread(_node_verdict, whole, jwks, tmp_path)
        assert (status, verdict["valid"]) == (0, True), verdict
    proof_key = bundle["proof"]["header"]["kid"]  # the one in use: another test may have rotated it
    assert set(verdict["keys_used"]) == {bundle["extents"][0]["statement"]["kid"], proof_key}
    edited = copy.deepcopy(bundle)
    attempt = next(e for e in edited["journal"] if e.get("outcome") == "wrong_code")
    attempt["outcome"] = "verified"
    status, verdict = await asyncio.to_thread(_node_verdict, edited, jwks, tmp_path)
    assert status == 1, verdict
    assert verdict["parts"]["operation"].startswith(f"journal: entry {attempt['seq']}: "), verdict
    mixed = copy.deepcopy(bundle)
    mixed["extents"][1] = selection["extents"][0]
    status, verdict = await asyncio.to_thread(_node_verdict, mixed, jwks, tmp_path)
    assert status == 1, verdict
    assert verdict["parts"]["operation"].startswith("lifecycle: the statement is of another query"), verdict
    # Decision 0147: the selection's only operation left out, or shown twice, with `found` made to agree.
    for edit, failure in (
        (lambda s: (s["operations"].clear(), s["found"].clear()), "is in the openings journal, not found"),
        (
            lambda s: (s["operations"].append(s["operations"][0]), s["found"].append(s["found"][0])),
            "not each once",
        ),
    ):
        edited = copy.deepcopy(selection)
        edit(edited)
        status, verdict = await asyncio.to_thread(_node_verdict, edited, jwks, tmp_path)
        assert status == 1, verdict
        assert failure in verdict["parts"]["user"], verdict

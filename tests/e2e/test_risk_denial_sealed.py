"""A StartChallenge the risk rules denied is evidence: journaled in the user's journal through journal_append
(numbered, sealed, archived), shown in the user's evidence bundle with its reasons and rules' version and an
inclusion proof to a verified seal, the number masked; `journal verify` finds it deleted (decision 0042)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from pypdf import PdfReader

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.domain import proof
from tests.e2e.conftest import Live, live_with_sim_swap
from tests.e2e.helpers import CONTEXT, PHONE, enrolled, transfer
from tests.support.camara_sim_swap import Operator

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _sesame(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _denied_and_sealed(live: Live, operator: Operator) -> str:
    """A transfer of a user whose SIM changed 2 hours ago: RISK_DENIED; the journal sealed and archived."""
    user_id = await enrolled(live)
    operator.changes[PHONE] = datetime.now(UTC) - timedelta(hours=2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
        )
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert live.sealer is not None
    assert await live.sealer.step() is not None
    return user_id


def _without_denial(archive: Path, copy: Path) -> None:
    """A copy of the archive whose block holding the denial no longer holds its entry."""
    shutil.copytree(archive, copy)
    for segment in copy.glob("segment-*.jsonl"):
        lines = []
        for line in segment.read_text(encoding="utf-8").splitlines():
            block: dict[str, Any] = json.loads(line)
            block["entries"] = [e for e in block["entries"] if e[2].get("event") != "risk.denied"]
            lines.append(json.dumps(block, separators=(",", ":"), ensure_ascii=False))
        segment.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def test_a_denied_start_is_sealed_and_in_the_users_bundle(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, operator: Operator
) -> None:
    """The by-user bundle of the period shows the denial (operation by digest, reasons, rules and version,
    the end user's context, the number masked) with a checked inclusion proof; the archive verifies, and
    no longer once the entry is taken out of it."""
    async with live_with_sim_swap(redis_store, keystore, tmp_path, operator, wait=0.3) as live:
        user_id = await _denied_and_sealed(live, operator)
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        pdf = tmp_path / "preuve.pdf"
        done = await asyncio.to_thread(
            _sesame,
            "evidence",
            "--user",
            user_id,
            "--since",
            since,
            "--pdf",
            str(pdf),
            "--target",
            live.address,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    bundle = json.loads(done.stdout)
    (denial,) = bundle["risk_denials"]
    assert (denial["op"], denial["reasons"], denial["rules"]) == (
        "credit_transfer",
        "SIM_SWAP",
        "recent-sim-swap",
    )
    assert denial["rules_version"].startswith("2026-12-06.1+")
    assert (denial["ip"], denial["device_id"], denial["phone"]) == (
        CONTEXT.ip,
        CONTEXT.device_id,
        "+33*******78",
    )
    assert {"operation", "op_digest"} <= denial.keys()  # the operation refused, as an opening journals it
    assert PHONE not in done.stdout
    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "Opérations refusées par le contrôle des risques : 1" in text
    assert "virement refusé(e), motifs SIM_SWAP" in text
    lifecycle = bundle["lifecycle"]
    position = lifecycle["entries"].index(denial)
    assert lifecycle["inclusion_proofs"][position] is not None
    assert (bundle["offline_check"]["valid"], bundle["offline_check"]["uncovered"]) == (True, 0)
    jwks = tmp_path / "journal-jwks.json"
    jwks.write_text(json.dumps(proof.jwk_set(await keystore.journal_public_keys())), encoding="utf-8")
    archive = tmp_path / "journal-archive"
    verified = await asyncio.to_thread(
        _sesame, "journal", "verify", "--archive", str(archive), "--jwks", str(jwks)
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr[-2000:]
    _without_denial(archive, tmp_path / "tampered")
    broken = await asyncio.to_thread(
        _sesame, "journal", "verify", "--archive", str(tmp_path / "tampered"), "--jwks", str(jwks)
    )
    assert broken.returncode == 1
    assert broken.stdout.startswith("BROKEN")

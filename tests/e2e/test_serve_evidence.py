"""`sesame evidence` and `sesame proof` against `sesame serve`, after a flow like the demo's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.e2e.conftest import Served
from tests.e2e.helpers import CONTEXT, PHONE, transfer, wrong
from tests.support.jws import claims_of, with_claims
from tests.support.outbox import sms_in

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def sesame(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `sesame` command."""
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _code(var: Path, challenge_id: str) -> str:
    return sms_in(var / "sms.jsonl", challenge_id)[1]


@pytest.fixture(scope="module")
def flow(served: Served) -> tuple[str, str, str]:
    """A wrong code, the right one, and a replay, on one challenge: (challenge_id, code, proof)."""
    with grpc.insecure_channel(served.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="dispute", client_id="acme", secure_phone=PHONE), timeout=5
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        start = auth_pb.StartChallengeRequest(user_id="dispute", operation=transfer(), context=CONTEXT)
        challenge_id = auth.StartChallenge(start, timeout=5).challenge_id
        code = _code(served.var, challenge_id)

        def verify(submitted: str) -> auth_pb.VerifyChallengeResponse:
            request = auth_pb.VerifyChallengeRequest(
                challenge_id=challenge_id, code=submitted, operation=transfer(), context=CONTEXT
            )
            reply: auth_pb.VerifyChallengeResponse = auth.VerifyChallenge(request, timeout=5)
            return reply

        verify(wrong(code))
        proof = verify(code).proof
        assert verify(code).result == auth_pb.VERIFY_RESULT_ALREADY_USED
    return challenge_id, code, proof


def test_evidence_prints_the_bundle_a_lawyer_files(served: Served, flow: tuple[str, str, str]) -> None:
    """The bundle holds the masked challenge, every journal entry and the proof, all checks passed."""
    challenge_id, code, proof = flow
    result = sesame("evidence", challenge_id, "--target", served.address)
    assert result.returncode == 0, result.stderr[-2000:]
    bundle: dict[str, Any] = json.loads(result.stdout)
    assert bundle["challenge"]["masked_phone"] == "+33*******78"
    assert [(e["event"], e["outcome"]) for e in bundle["journal"] if e["event"] != "challenge.delivery"] == [
        ("challenge.opened", "opened"),
        ("challenge.verification", "wrong_code"),
        ("challenge.verification", "verified"),
        ("challenge.proof", "issued"),
        ("challenge.verification", "already_used"),
    ]
    # Signed again when first asked for: the same header and claims as VerifyChallenge's (decision 0026).
    assert bundle["proof"]["jws"].rsplit(".", 1)[0] == proof.rsplit(".", 1)[0]
    checks = bundle["proof"]["verification"]
    assert (checks["valid"], checks["claims_match_journal"], checks["op_digest_matches_operation"]) == (
        True,
        True,
        True,
    )
    assert PHONE[1:] not in result.stdout
    assert code not in result.stdout.replace(challenge_id, "")


def test_proof_verify_checks_against_an_archived_jwk_set(
    served: Served, flow: tuple[str, str, str], tmp_path: Path
) -> None:
    """`sesame proof keys` saves the JWK set; `sesame proof verify --jwks` checks the proof offline."""
    _, _, proof = flow
    keys = sesame("proof", "keys", "--target", served.address)
    assert keys.returncode == 0, keys.stderr[-2000:]
    (tmp_path / "jwks.json").write_text(keys.stdout)
    result = sesame("proof", "verify", proof, "--jwks", str(tmp_path / "jwks.json"))
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert json.loads(result.stdout)["claims"]["sub"] == "dispute"


def test_proof_verify_rejects_a_changed_claim(served: Served, flow: tuple[str, str, str]) -> None:
    """A proof whose operation digest was changed is INVALID (exit 1) under the server's keys."""
    _, _, proof = flow
    forged = with_claims(proof, {**claims_of(proof), "op_digest": "00" * 32})
    result = sesame("proof", "verify", forged, "--target", served.address)
    assert (result.returncode, result.stdout.split(":", 1)[0]) == (1, "INVALID")

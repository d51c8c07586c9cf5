"""The evidence bundle of a transfer disputed 30 days later (issue 8's done-when, decision 0036), through
the real server, Redis and SoftHSM: found by the caller's transaction id, by user and period and by
challenge; it shows the operation as authorised, the SMS sent and delivered, each attempt with its context,
the verification and the proof, the user's lifecycle and the health notes of the time, each event covered
by a verified seal through its inclusion proof; it verifies again offline with the JWK set only, and its PDF
(French) reads back with the operation, amount, payee, times and outcome.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp
from pypdf import PdfReader

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.server.domain.model import DeliveryState
from sesame.server.evidence_bundle import FACTOR_PREFIXES
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, IBAN, enrolled, read_code, started, transfer, verify, wrong
from tests.support.evidence_cli import bundle_from, run_evidence

# The server journals health notes, as `sesame serve` does (the test servers do not unless asked).
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.parametrize("health_notes", [True]),
]


def _factor(at: datetime, method: str, category: int, reference: str = "") -> auth_pb.FirstFactor:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return auth_pb.FirstFactor(category=category, method=method, verified_at=stamp, reference=reference)


async def _disputed_transfer(live: Live, redis_client: aioredis.Redis) -> str:
    """A transfer with both factors (a device binding at Start, a password with the right code), authorised
    after a wrong code, its SMS delivered, sealed and archived; then 30 days pass and the challenge itself is
    purged (its journal stays)."""
    user_id = await enrolled(live)
    now = live.clock.now()
    binding = _factor(
        now - timedelta(minutes=2), "device-binding", auth_pb.FACTOR_CATEGORY_POSSESSION, "db-77"
    )
    start = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id=user_id, operation=transfer(), context=CONTEXT, first_factor=binding
        )
    )
    challenge_id = start.challenge_id
    _, code = await read_code(live.sms_file, challenge_id)
    # The SMSC's delivery report, as the gateway's report receiver records it.
    await live.store.challenges.record_delivery(
        challenge_id, DeliveryState.DELIVERED, "smsc-ref-1", live.clock.now()
    )
    assert (await verify(live, challenge_id, wrong(code))).result == auth_pb.VERIFY_RESULT_WRONG_CODE
    password = _factor(now - timedelta(seconds=30), "password", auth_pb.FACTOR_CATEGORY_KNOWLEDGE)
    right = await live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=challenge_id, code=code, operation=transfer(), context=CONTEXT, first_factor=password
        )
    )
    assert right.result == auth_pb.VERIFY_RESULT_VERIFIED
    assert live.sealer is not None
    await live.sealer.step()  # sealed, archived, indexed by user (decision 0036)
    await live.sealer.step()  # the openings journal's entry, journaled by the index step, sealed (0042)
    live.clock.advance(timedelta(days=30))
    await redis_client.delete(live.store.keys.challenge(challenge_id))  # what the purge does
    return challenge_id


def _check_operation(op: dict[str, Any], challenge_id: str) -> None:
    """What the done-when asks of one operation's bundle."""
    assert op["challenge_id"] == challenge_id
    sections = op["l133_23"]
    authorised = sections["accounted_for"]["operation_as_authorised"]
    assert authorised["type"] == "credit_transfer"
    assert authorised["amount"] == {"currency": "EUR", "amount_minor": 125000}
    assert authorised["payee"] == {"name": "Jean DUPONT", "iban": IBAN}
    assert (authorised["transaction_id"], authorised["digest_matches_journal"]) == ("tx-1", True)
    sms = sections["authenticated"]["second_factor_sms"]
    assert (sms["sent"], sms["delivered"]) == (True, True)
    attempts = sections["authenticated"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["wrong_code", "verified"]
    for attempt in attempts:
        assert (attempt["ip"], attempt["device_id"], attempt["user_agent"]) == (
            CONTEXT.ip,
            CONTEXT.device_id,
            CONTEXT.user_agent,
        )
    assert sections["authenticated"]["verified_at"] == attempts[-1]["at"]
    proof = sections["authenticated"]["proof"]
    assert proof["valid"] is True
    assert proof["signature"].startswith("ES256, verified under sesame-proof-v")
    # Both factors: the first one as the caller asserted it, once journaled (issue 8 item 3).
    factors = [e for e in op["journal"] if any(k.startswith(FACTOR_PREFIXES) for k in e)]
    if factors:  # the caller asserted it: each entry's factor (category, method, time) is shown
        shown = sections["authenticated"]["first_factor"]
        assert [(f["event"], f["at"]) for f in shown] == [(e["event"], e["at"]) for e in factors]
        assert all(
            f[k] == e[k] for f, e in zip(shown, factors, strict=True) for k in f if k.startswith("factor")
        )
    else:
        assert sections["authenticated"]["first_factor"] is None
    # Every event, of the challenge, the lifecycle and the health notes, covered by a verified seal.
    assert op["journal_seals"]["valid"] is True
    assert all(p is not None for p in op["inclusion_proofs"])
    assert sections["recorded"]["events_with_inclusion_proof"] == len(op["journal"]) >= 5
    assert {"challenge.opened", "challenge.delivery", "challenge.verification", "challenge.proof"} <= {
        e["event"] for e in op["journal"]
    }
    assert op["offline_check"]["valid"] is True
    assert op["offline_check"]["uncovered"] == 0
    assert sections["lifecycle"][0]["event"] == "user.enrolled"
    notes = sections["no_technical_deficiency"]["health_notes"]
    assert notes
    assert notes[0]["key store"] == notes[0]["state store"] == "up"
    assert sections["no_technical_deficiency"]["every_dependency_up"] is True


async def test_the_bundle_of_a_transfer_disputed_30_days_later(
    live: Live, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    challenge_id = await _disputed_transfer(live, redis_client)
    pdf = tmp_path / "preuve.pdf"
    by_transaction = await bundle_from(
        live.address, "--user", "alice", "--transaction", "tx-1", "--pdf", str(pdf)
    )
    assert [m["challenge_id"] for m in by_transaction["found"]] == [challenge_id]
    assert pdf.stat().st_mode & 0o777 == 0o600  # as the archive: it names the user, the IBAN, the IP
    _check_operation(by_transaction["operations"][0], challenge_id)

    now = live.clock.now()
    period = ["--since", (now - timedelta(days=31)).isoformat(), "--until", now.isoformat()]
    by_period = await bundle_from(live.address, "--user", "alice", *period)
    assert [op["challenge_id"] for op in by_period["operations"]] == [challenge_id]
    too_late = ["--since", (now - timedelta(days=29)).isoformat(), "--until", now.isoformat()]
    assert (await bundle_from(live.address, "--user", "alice", *too_late))["operations"] == []
    assert (await bundle_from(live.address, "--user", "alice", "--transaction", "tx-9"))["operations"] == []
    _check_operation(await bundle_from(live.address, challenge_id), challenge_id)

    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    op = by_transaction["operations"][0]
    opened = datetime.fromisoformat(op["journal"][0]["at"]).astimezone(UTC)
    for expected in (
        "Dossier de preuve",
        "Opération comptabilisée",
        "virement",
        "1 250,00 EUR",
        "Jean DUPONT",
        IBAN,
        "tx-1",
        opened.strftime("%d/%m/%Y %H:%M:%S"),
        "code erroné",
        "vérifié (code exact)",
        "distribué",
        "Opération authentifiée",
        "Opération enregistrée",
        "Absence de déficience technique",
        "enrôlement",
        "possession, device-binding",
        "connaissance, password",
    ):
        assert expected in text, expected


async def test_a_saved_bundle_verifies_offline_with_the_jwk_set_only(
    live: Live, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """No server: the bundle file and the proof and journal keys' JWK set. One edited byte fails."""
    challenge_id = await _disputed_transfer(live, redis_client)
    bundle = await bundle_from(live.address, "--user", "alice", "--transaction", "tx-1")
    op = bundle["operations"][0]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [*op["jwks"]["keys"], *op["journal_jwks"]["keys"]]}))
    saved = tmp_path / "bundle.json"
    saved.write_text(json.dumps(bundle))
    done = await asyncio.to_thread(run_evidence, "--verify", str(saved), "--jwks", str(jwks))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["operations"][0]["covered"] >= 5
    op["l133_23"]["accounted_for"]["operation_as_authorised"]["amount"]["amount_minor"] = 1
    saved.write_text(json.dumps(bundle))
    done = await asyncio.to_thread(run_evidence, "--verify", str(saved), "--jwks", str(jwks))
    assert done.returncode == 1
    assert json.loads(done.stdout)["operations"][0]["failed"].startswith("the L.133-23 sections differ")
    op["l133_23"]["accounted_for"]["operation_as_authorised"]["amount"]["amount_minor"] = 125000
    attempt = next(e for e in op["journal"] if e.get("outcome") == "wrong_code")
    attempt["ip"] = "203.0.113.9"  # the evidence: its leaf no longer matches
    saved.write_text(json.dumps(bundle))
    done = await asyncio.to_thread(run_evidence, "--verify", str(saved), "--jwks", str(jwks))
    assert done.returncode == 1
    assert "the entry differs from the entry sealed" in json.loads(done.stdout)["operations"][0]["failed"]
    # The other side's edits that once held: the edited entry without its inclusion proof, the wrong code
    # dropped, another challenge's id, the claims shown edited beside the signed proof.
    attempt["ip"] = CONTEXT.ip
    pristine, index = json.dumps(bundle), op["journal"].index(attempt)
    for tamper, failure in (
        (lambda o: o["inclusion_proofs"].__setitem__(index, None), "has no inclusion proof"),
        (lambda o: (o["journal"].pop(index), o["inclusion_proofs"].pop(index)), "is missing or out of place"),
        (lambda o: o.__setitem__("challenge_id", "another"), "is not this bundle's stream"),
        (lambda o: o["proof"]["claims"].__setitem__("iat", 1), "the header or claims shown are not those"),
    ):
        edited = json.loads(pristine)
        tamper(edited["operations"][0])
        saved.write_text(json.dumps(edited))
        done = await asyncio.to_thread(run_evidence, "--verify", str(saved), "--jwks", str(jwks))
        assert done.returncode == 1
        assert failure in json.loads(done.stdout)["operations"][0]["failed"], done.stdout
    assert challenge_id


async def test_get_user_evidence_pages_and_refuses_bad_input(live: Live) -> None:
    """Two transfers, one a page: two pages, the lifecycle on the first only; a period that ends before it
    starts, a page token no page gave, a page size out of bounds: INVALID_ARGUMENT."""
    user_id = await enrolled(live)
    first, _ = await started(live, user_id)
    second, _ = await started(live, user_id, transfer(name="Marie MARTIN"))
    assert live.sealer is not None
    await live.sealer.step()
    stub = evidence_grpc.EvidenceServiceStub(live.channel)
    request = evidence_pb.GetUserEvidenceRequest(user_id=user_id, page_size=1)
    page = await stub.GetUserEvidence(request)
    assert [m.challenge_id for m in page.challenges] == [first]
    assert page.lifecycle[0].fields["event"] == "user.enrolled"
    assert json.loads(page.seals_json)["seals"]
    request.page_token = page.next_page_token
    page = await stub.GetUserEvidence(request)
    assert ([m.challenge_id for m in page.challenges], page.next_page_token, len(page.lifecycle)) == (
        [second],
        "",
        0,
    )
    late, early = evidence_pb.GetUserEvidenceRequest(user_id=user_id), live.clock.now()
    late.since.FromDatetime(early)
    late.until.FromDatetime(early - timedelta(days=1))
    for bad in (
        late,
        evidence_pb.GetUserEvidenceRequest(user_id=user_id, page_token="not-a-token"),  # noqa: S106 (a page token)
        evidence_pb.GetUserEvidenceRequest(user_id=user_id, page_size=1001),
        evidence_pb.GetUserEvidenceRequest(user_id=""),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetUserEvidence(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

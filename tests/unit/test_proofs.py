"""The proof flows over fakes: a proof for every VERIFIED answer, issued from the journal when needed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sesame.server.domain.errors import ChallengeNotFound, ChallengeNotVerified, InvalidRequest
from sesame.server.domain.model import VerifyResult
from sesame.server.domain.operation import digest
from sesame.server.grpc.demo import code_in
from tests.support.jws import claims_of, verified_claims
from tests.support.proof_world import PHONE, RETENTION, TRANSFER, World


async def test_a_verified_answer_carries_a_proof_that_verifies() -> None:
    """VERIFIED comes with a JWS whose signature checks, by `cryptography`, under the published keys."""
    world = World()
    outcome = await world.verify(await world.started())
    assert outcome.result is VerifyResult.VERIFIED
    assert verified_claims(outcome.proof, await world.jwks())["sub"] == "alice"


async def test_the_proof_states_the_decision() -> None:
    """The claims name the user, client, challenge, operation, key, instant, attempts used and context."""
    world = World()
    challenge_id = await world.started()
    await world.verify(challenge_id, right=False)
    world.clock.advance(timedelta(seconds=20))
    claims = claims_of((await world.verify(challenge_id)).proof)
    assert (claims["iss"], claims["sub"], claims["client_id"]) == ("MaBanque", "alice", "acme")
    assert (claims["challenge_id"], claims["op"]) == (challenge_id, "credit_transfer")
    assert claims["op_digest"] == digest(TRANSFER).hex()
    assert (claims["key_version"], claims["attempts"], claims["amr"]) == (1, 2, ["otp", "sms"])
    assert claims["iat"] == int(world.clock.now().timestamp())
    assert claims["ctx"] == {"ip": "203.0.113.7", "device_id": "dev-1", "session_id": "sess-1"}


async def test_only_verified_answers_carry_a_proof() -> None:
    """A wrong code and a replay of the right one answer with an empty proof."""
    world = World()
    challenge_id = await world.started()
    assert (await world.verify(challenge_id, right=False)).proof == ""
    await world.verify(challenge_id)
    replay = await world.verify(challenge_id)
    assert (replay.result, replay.proof) == (VerifyResult.ALREADY_USED, "")


async def test_the_proof_holds_neither_the_code_nor_the_phone() -> None:
    """No claim carries the code that was sent or the secure number, even partly."""
    world = World()
    challenge_id = await world.started()
    code = code_in(world.sms.sent[-1].text)
    text = str(claims_of((await world.verify(challenge_id)).proof))
    assert code not in text
    assert PHONE[-8:] not in text


async def test_the_journal_names_the_proof_by_jti_and_kid() -> None:
    """The challenge.proof entry follows the verification, written by the decision itself: its jti and kid.

    The proof is named before the decision and signed after it, so the journal fixes every byte it signs
    without a second write; the JWS is kept only when GetProof asks for it again (docs/decisions/0026).
    """
    world = World()
    challenge_id = await world.started()
    jws = (await world.verify(challenge_id)).proof
    *_, verification, entry = await world.store.journal.challenge_journal(challenge_id)
    assert (verification["event"], verification["outcome"]) == ("challenge.verification", "verified")
    assert (entry["event"], entry["jti"], entry["kid"]) == (
        "challenge.proof",
        claims_of(jws)["jti"],
        "sesame-proof-v1",
    )
    assert "proof" not in entry
    assert await world.store.proofs.stored_proof(challenge_id) == ""


async def test_a_refused_right_code_names_no_proof() -> None:
    """A right code refused (the challenge already used) journals no jti: no proof is named or signed."""
    world = World()
    challenge_id = await world.started()
    await world.verify(challenge_id)
    replay = await world.verify(challenge_id)
    assert (replay.result, replay.proof) == (VerifyResult.ALREADY_USED, "")
    events = [(e["event"], e["outcome"]) for e in await world.store.journal.challenge_journal(challenge_id)]
    assert events[-3:] == [
        ("challenge.verification", "verified"),
        ("challenge.proof", "issued"),
        ("challenge.verification", "already_used"),
    ]


async def test_without_a_proof_key_the_answer_is_still_verified() -> None:
    """When no proof can be signed the decision stands: VERIFIED, empty proof, and the challenge is spent."""
    world = World(proof_key=False)
    challenge_id = await world.started()
    outcome = await world.verify(challenge_id)
    assert (outcome.result, outcome.proof) == (VerifyResult.VERIFIED, "")
    assert (await world.verify(challenge_id)).result is VerifyResult.ALREADY_USED


async def test_get_proof_issues_a_missing_proof_from_the_journal() -> None:
    """Later, GetProof signs the proof of the journaled decision, stating the verification instant."""
    world = World(proof_key=False)
    challenge_id = await world.started()
    verified_at = world.clock.now()
    await world.verify(challenge_id)
    world.keys.add_proof_key(1)
    world.clock.advance(timedelta(minutes=3))
    claims = verified_claims(await world.proofs.get(challenge_id), await world.jwks())
    assert (claims["iat"], claims["attempts"]) == (int(verified_at.timestamp()), 1)
    assert (claims["op"], claims["op_digest"]) == ("credit_transfer", digest(TRANSFER).hex())
    assert claims["ctx"]["session_id"] == "sess-1"


async def test_get_proof_gives_the_same_proof_again() -> None:
    """GetProof states exactly what VerifyChallenge's proof stated (header and claims, jti included), and
    then gives that one proof every time; only the ECDSA signature's random bytes differ (decision 0026)."""
    world = World()
    challenge_id = await world.started()
    jws = (await world.verify(challenge_id)).proof
    again = await world.proofs.get(challenge_id)
    assert again.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]
    verified_claims(again, await world.jwks())
    assert await world.proofs.get(challenge_id) == again


async def test_get_proof_works_after_the_challenge_was_purged() -> None:
    """Past its retention the challenge is gone, but its proof is issued from the journal alone."""
    world = World(proof_key=False)
    challenge_id = await world.started()
    await world.verify(challenge_id)
    world.keys.add_proof_key(1)
    world.clock.advance(timedelta(minutes=5) + RETENTION)
    with pytest.raises(ChallengeNotFound):
        await world.flows.get(challenge_id)
    assert (
        verified_claims(await world.proofs.get(challenge_id), await world.jwks())["challenge_id"]
        == challenge_id
    )


async def test_get_proof_of_a_challenge_not_verified_is_refused() -> None:
    """A challenge with only a wrong code has no proof: ChallengeNotVerified."""
    world = World()
    challenge_id = await world.started()
    await world.verify(challenge_id, right=False)
    with pytest.raises(ChallengeNotVerified):
        await world.proofs.get(challenge_id)


async def test_get_proof_of_an_unknown_or_malformed_id_is_refused() -> None:
    """An id never opened is ChallengeNotFound; something that is not an id is InvalidRequest."""
    world = World()
    with pytest.raises(ChallengeNotFound):
        await world.proofs.get(f"{'0' * 32}.k1.d6.u{'0' * 16}")
    with pytest.raises(InvalidRequest):
        await world.proofs.get("not-an-id")


async def test_evidence_gathers_the_challenge_its_journal_and_its_proof() -> None:
    """The evidence of a verified challenge holds it, every journal entry and the proof."""
    world = World()
    challenge_id = await world.started()
    jws = (await world.verify(challenge_id)).proof
    evidence = await world.proofs.evidence(challenge_id)
    assert evidence.challenge is not None
    assert evidence.challenge.challenge_id == challenge_id
    assert [e["event"] for e in evidence.journal] == [
        "challenge.opened",
        "challenge.delivery",
        "challenge.verification",
        "challenge.proof",
    ]
    # The proof is journaled when first asked for, stating what VerifyChallenge's did (decision 0026).
    assert evidence.proof.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]


async def test_evidence_of_a_purged_challenge_keeps_journal_and_proof() -> None:
    """Past its retention the evidence has no challenge but still its journal and proof."""
    world = World()
    challenge_id = await world.started()
    jws = (await world.verify(challenge_id)).proof
    world.clock.advance(timedelta(minutes=5) + RETENTION)
    evidence = await world.proofs.evidence(challenge_id)
    assert (evidence.challenge, len(evidence.journal)) == (None, 4)
    assert evidence.proof.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]

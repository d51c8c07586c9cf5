"""Checking proofs and assembling evidence bundles (`sesame proof verify`, `sesame evidence`), over fakes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sesame.server.domain.operation import digest
from sesame.server.domain.proof import jwk_set
from sesame.server.evidence import EvidenceRecord, ProofRejected, bundle, check_proof, is_sound
from tests.support.jws import claims_of, with_claims
from tests.support.proof_world import TRANSFER, World

TRANSFER_DIGEST = digest(TRANSFER).hex()


async def verified(world: World) -> tuple[str, str]:
    """A verified challenge of the world and its proof."""
    challenge_id = await world.started()
    return challenge_id, (await world.verify(challenge_id)).proof


async def record_of(world: World, challenge_id: str, operation_digest: str | None) -> EvidenceRecord:
    evidence = await world.proofs.evidence(challenge_id)
    return EvidenceRecord(
        challenge_id, {"challenge_id": challenge_id}, evidence.journal, evidence.proof, operation_digest
    )


async def test_a_proof_checks_under_its_jwk_set() -> None:
    """check_proof() reads back the claims of a proof whose signature verifies."""
    world = World()
    challenge_id, jws = await verified(world)
    assert check_proof(jws, await world.jwks()).claims["challenge_id"] == challenge_id


async def test_a_changed_claim_is_rejected() -> None:
    """A proof whose claims were changed after signing is ProofRejected."""
    world = World()
    _, jws = await verified(world)
    forged = with_claims(jws, {**claims_of(jws), "attempts": 1, "sub": "mallory"})
    with pytest.raises(ProofRejected):
        check_proof(forged, await world.jwks())


async def test_a_key_missing_from_the_set_is_rejected() -> None:
    """A proof whose kid the JWK set lacks is ProofRejected, not an error of ours."""
    world = World()
    _, jws = await verified(world)
    with pytest.raises(ProofRejected):
        check_proof(jws, jwk_set([]))


async def test_a_bundle_checks_the_proof_against_the_journal_and_the_operation() -> None:
    """A sound bundle says the signature, the journal and the operation digest all agree with the proof."""
    world = World()
    challenge_id, _ = await verified(world)
    evidence = bundle(await record_of(world, challenge_id, TRANSFER_DIGEST), await world.jwks())
    checks = evidence["proof"]["verification"]
    assert (checks["valid"], checks["claims_match_journal"], checks["op_digest_matches_operation"]) == (
        True,
        True,
        True,
    )
    assert is_sound(evidence)


async def test_a_bundle_flags_a_proof_the_journal_does_not_name() -> None:
    """A validly signed proof of another challenge does not match this challenge's journal."""
    world = World()
    challenge_id, _ = await verified(world)
    _, other = await verified(world)
    record = dataclasses.replace(await record_of(world, challenge_id, TRANSFER_DIGEST), proof=other)
    evidence: dict[str, Any] = bundle(record, await world.jwks())
    assert evidence["proof"]["verification"]["valid"]
    assert not evidence["proof"]["verification"]["claims_match_journal"]
    assert not is_sound(evidence)


async def test_a_bundle_flags_another_operation() -> None:
    """When the challenge's operation does not give the proof's digest, the bundle says so."""
    world = World()
    challenge_id, _ = await verified(world)
    evidence = bundle(await record_of(world, challenge_id, "00" * 32), await world.jwks())
    assert evidence["proof"]["verification"]["op_digest_matches_operation"] is False
    assert not is_sound(evidence)


async def test_a_bundle_without_a_proof_has_nothing_to_fail() -> None:
    """A challenge that was never verified gives a bundle with a null proof, sound as far as it goes."""
    world = World()
    challenge_id = await world.started()
    evidence = bundle(await record_of(world, challenge_id, TRANSFER_DIGEST), await world.jwks())
    assert evidence["proof"] is None
    assert is_sound(evidence)

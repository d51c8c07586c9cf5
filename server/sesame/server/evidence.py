"""Checking proofs and assembling evidence bundles (`sesame proof verify`, `sesame evidence`).

The signature is checked with `cryptography` against a JWK set, the way any verifier outside Sésame would:
the HSM is not needed, only the public keys. The bundle puts side by side what a dispute needs: the
challenge, its whole journal, the proof, and what was checked about the proof.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sesame.server.domain import operation, proof
from sesame.server.domain.errors import JournalDisagrees, SesameError
from sesame.server.domain.journal_seal import seal_from_dict
from sesame.server.journal_check import check_stream
from sesame.server.jwk_keys import key_named, named_twice, public_key


class ProofRejected(SesameError):
    """The proof is malformed, names a key the JWK set lacks, or its signature does not verify."""


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """What the server holds about a challenge, as plain data (the gRPC answer, decoded)."""

    challenge_id: str
    challenge: dict[str, Any] | None  # as GetChallenge describes it; None once purged
    journal: list[dict[str, str]]
    proof: str  # "" when none was issued
    operation_digest: str | None  # hex SHA-256 of the challenge's operation, recomputed; None once purged
    # How often each kind of refusal was answered (event, outcome, count, last_at): only the first of each
    # kind is in the journal.
    refusals: list[dict[str, Any]] = field(default_factory=list)
    # The seals covering the journal, as the server gave them (JSON, docs/decisions/0027); "" when none.
    seals_json: str = ""


def check_proof(jws: str, jwks: Mapping[str, Any]) -> proof.ParsedProof:
    """The proof read back once its ES256 signature verifies under the key its kid names. ProofRejected.

    Both come from outside: a malformed proof or JWK set (any JSON value, even not a mapping) is
    ProofRejected, and a high-S signature too, although it verifies.
    """
    try:
        parsed = proof.parse(jws)
    except ValueError as exc:
        raise ProofRejected(f"not a Sésame proof: {exc}") from None
    if not proof.is_low_s(parsed.signature):
        # (r, n - s) verifies too: Sésame signs low-S only, so a high-S proof is a copy someone altered.
        raise ProofRejected("the signature is not in low-S form (Sésame issues low-S signatures only)")
    try:
        public = public_key(_key_named(jwks, parsed.kid))
    except ValueError as exc:
        raise ProofRejected(f"the JWK set is malformed: {exc}") from None
    signature = parsed.signature
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, parsed.signing_input, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise ProofRejected(f"the signature does not verify under {parsed.kid!r}") from None
    return parsed


def _key_named(jwks: Any, kid: str) -> Mapping[str, Any]:
    """The JWK whose kid is `kid`. ProofRejected when none is; ValueError when the set is not a JWK set."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not all(isinstance(key, Mapping) for key in keys):
        raise ValueError('not an object with a "keys" list of objects')
    if named_twice(jwks, kid):
        raise ProofRejected(f"the JWK set names {kid!r} for two different keys")
    key = key_named(jwks, kid)
    if key is None:
        raise ProofRejected(f"no key {kid!r} in the JWK set")
    return key


def bundle(record: EvidenceRecord, jwks: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence bundle of a challenge: challenge, journal, proof and the checks made on the proof."""
    return {
        "challenge_id": record.challenge_id,
        "challenge": record.challenge,
        "journal": record.journal,
        "refusals": record.refusals,
        "proof": _proof_section(record, jwks) if record.proof else None,
        "jwks": dict(jwks),
        "journal_seals": journal_section(record),
        "operation_as_authorised": authorised_operation(record.journal),
    }


def authorised_operation(journal: Sequence[Mapping[str, str]]) -> dict[str, Any] | None:
    """The operation the challenge was opened for, from its journal (it outlives the challenge): its type and
    fields, and whether its encoding gives the digest journaled with it. None when not journaled (a change
    of number, or a journal from before)."""
    opened = next((e for e in journal if e.get("event") == "challenge.opened" and e.get("operation")), None)
    if opened is None:
        return None
    try:
        encoded = proof.b64url_decode(opened["operation"])
        decoded = operation.decode(encoded)
    except ValueError:
        return {"valid": False, "reason": "the journaled operation is not a canonical encoding"}
    fields = dataclasses.asdict(decoded)
    return {
        "type": operation.kind(decoded).name.lower(),
        **fields,
        "digest_matches_journal": hashlib.sha256(encoded).hexdigest() == opened.get("op_digest"),
    }


def journal_section(record: EvidenceRecord) -> dict[str, Any] | None:
    """The journal checked against its seals, with the journal keys the server gave (decision 0027).

    None when the server gave none (a server from before the sealed journal); seals that do not parse fail.
    """
    if not record.seals_json:
        return None
    try:
        given = json.loads(record.seals_json)
        seals = [seal_from_dict(seal) for seal in given["seals"]]
        checked = check_stream(str(given["stream"]), record.journal, seals, given["jwks"]).as_dict()
    except (ValueError, KeyError, TypeError) as exc:
        return {"valid": False, "failed": f"the seals cannot be read: {exc}"}
    return {**checked, "given": given}


def _proof_section(record: EvidenceRecord, jwks: Mapping[str, Any]) -> dict[str, Any]:
    try:
        parsed = check_proof(record.proof, jwks)
    except ProofRejected as rejected:
        return {"jws": record.proof, "verification": {"valid": False, "reason": str(rejected)}}
    claims = parsed.claims
    checks = {
        "valid": True,
        "signature": f"ES256, verified under {parsed.kid}",
        "claims_match_journal": claims_match_journal(claims, record.journal),
        "op_digest_matches_operation": (
            None if record.operation_digest is None else claims.get("op_digest") == record.operation_digest
        ),
    }
    return {"jws": record.proof, "header": parsed.header, "claims": claims, "verification": checks}


def claims_match_journal(claims: Mapping[str, Any], journal: Sequence[Mapping[str, str]]) -> bool:
    """Whether the claims are exactly those the journaled decision gives, and the journal names this proof;
    not when the decision names another challenge, user, client or operation than the opening."""
    try:
        facts = proof.ProofFacts.from_journal(journal)
    except JournalDisagrees:
        return False
    if facts is None:
        return False
    expected = proof.claims(facts, issuer=str(claims.get("iss")), jti=str(claims.get("jti")))
    journaled = [e for e in journal if e.get("event") == "challenge.proof"]
    return dict(claims) == expected and [e.get("jti") for e in journaled] == [claims.get("jti")]


def is_sound(evidence: Mapping[str, Any]) -> bool:
    """Whether every check of a bundle passed: the journal's seals, the operation journaled as authorised,
    then the proof (if any)."""
    seals = evidence.get("journal_seals")
    if seals and not seals["valid"]:
        return False
    authorised = evidence.get("operation_as_authorised")
    if authorised is not None and not authorised.get("digest_matches_journal"):
        return False
    section = evidence.get("proof")
    if section is None:
        return True
    checks = section["verification"]
    return bool(
        checks["valid"]
        and checks["claims_match_journal"]
        and checks["op_digest_matches_operation"] is not False
    )

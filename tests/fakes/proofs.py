"""The Proofs fake: the JWS kept once per challenge, from the journal in `Memory` (as record_proof.lua)."""

from __future__ import annotations

from datetime import datetime

from sesame.server.domain.errors import ChallengeNotFound, ChallengeNotVerified
from sesame.server.domain.ports import Proofs
from sesame.server.domain.proof import IssuedProof
from tests.fakes.journal_fields import iso
from tests.fakes.memory import Memory


class MemoryProofs:
    """Proofs in the shared memory, under its one lock."""

    def __init__(self, memory: Memory) -> None:
        self._m = memory

    async def record_proof(self, proof: IssuedProof, at: datetime) -> str:
        async with self._m._lock:
            facts = proof.facts
            journal = self._m._challenge_journals.get(facts.challenge_id)
            if not journal:
                raise ChallengeNotFound(facts.challenge_id)
            named = [e for e in journal if e["event"] == "challenge.proof"]
            if named and "proof" in named[0]:
                return named[0]["proof"]  # journaled whole, before decision 0026
            verified = ("challenge.verification", "verified")
            if not any((e["event"], e["outcome"]) == verified for e in journal):
                raise ChallengeNotVerified(facts.challenge_id)
            kept = self._m._proofs.setdefault(facts.challenge_id, proof.jws)
            if kept != proof.jws or named:
                return kept
            journal.append(
                {
                    "event": "challenge.proof",
                    "at": iso(at),
                    "challenge_id": facts.challenge_id,
                    "user_id": facts.user_id,
                    "client_id": facts.client_id,
                    "op_digest": facts.op_digest,
                    "outcome": "issued",
                    "attempts": str(facts.attempts),
                    "status": "verified",
                    "jti": proof.jti,
                    "kid": proof.kid,
                }
            )
            return proof.jws

    async def stored_proof(self, challenge_id: str) -> str:
        return self._m._proofs.get(challenge_id, "")


_: type[Proofs] = MemoryProofs

"""The Proofs fake: the JWS kept once per challenge, beside the journal in `Memory` (as record_proof.lua)."""

from __future__ import annotations

from datetime import datetime

from sesame.server.domain.errors import ChallengeNotFound
from sesame.server.domain.ports import Proofs
from sesame.server.domain.proof import IssuedProof
from tests.fakes.journal_fields import iso
from tests.fakes.memory import Memory


class MemoryProofs:
    """Proofs in the shared memory, under its one lock."""

    def __init__(self, memory: Memory) -> None:
        self._m = memory

    async def record_proof(self, proof: IssuedProof, at: datetime, *, journaled: bool) -> str:
        async with self._m._lock:
            facts = proof.facts
            journal = self._m._challenge_journals.get(facts.challenge_id)
            if not journal:
                raise ChallengeNotFound(facts.challenge_id)
            kept = self._m._proofs.setdefault(facts.challenge_id, proof.jws)
            if kept != proof.jws or journaled or any(e["event"] == "challenge.proof" for e in journal):
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

"""The proof flows: sign the proof of a verified challenge, give it again, publish the keys, gather evidence.

A proof is signed after the atomic decision, journaled, then handed out: a proof the caller holds is always
in the journal. When the HSM (or Redis) fails between the decision and the proof, the challenge is spent
anyway; VerifyChallenge still answers VERIFIED, with an empty proof, and GetProof issues the proof later from
the journaled decision (docs/decisions/0009-signed-proofs.md).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sesame.server.domain import proof
from sesame.server.domain.challenges import checked_ref
from sesame.server.domain.errors import (
    ChallengeNotFound,
    ChallengeNotVerified,
    HsmUnavailable,
    KeyNotFound,
    StoreUnavailable,
)
from sesame.server.domain.proof import IssuedProof, ProofFacts

if TYPE_CHECKING:
    from sesame.server.domain.model import (
        Challenge,
        PublicKey,
        VerificationAttempt,
        VerificationOutcome,
    )
    from sesame.server.domain.ports import Clock, KeyStore, StateStore

JTI_BYTES = 16  # a proof id needs to be unique, not secret: 128 random bits

_log = logging.getLogger("sesame.proofs")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What Sésame holds about one challenge, for a dispute."""

    challenge: Challenge | None  # None once purged, `retention` after its expiry
    journal: list[dict[str, str]]  # every entry, oldest first; it outlives the challenge
    proof: str  # the proof journaled for it, "" when none was issued


class ProofFlows:
    """Proofs of verified challenges, and the public keys that check them."""

    def __init__(self, *, keys: KeyStore, store: StateStore, clock: Clock, issuer: str) -> None:
        self._keys = keys
        self._store = store
        self._clock = clock
        self._issuer = issuer

    async def issue(self, facts: ProofFacts) -> str:
        """Sign a proof of `facts` with the current proof key, journal it; return the proof that stands."""
        key = await self._keys.current_proof_key()
        jti = secrets.token_hex(JTI_BYTES)
        signed = proof.signing_input(key.label, proof.claims(facts, issuer=self._issuer, jti=jti))
        jws = proof.compact(signed, await self._keys.sign(key, signed))
        return await self._store.record_proof(IssuedProof(jws, jti, key.label, facts), self._clock.now())

    async def after_verification(self, outcome: VerificationOutcome, attempt: VerificationAttempt) -> str:
        """The proof of a decision just made VERIFIED, or "" when it cannot be issued now.

        The decision stands whatever happens here: the challenge is spent, so the caller must learn that it
        was VERIFIED (and execute the operation once); GetProof issues the missing proof later.
        """
        try:
            return await self.issue(ProofFacts.of(outcome, attempt))
        except (HsmUnavailable, KeyNotFound, StoreUnavailable) as exc:
            _log.warning("verified without a proof (%s): GetProof will issue it", type(exc).__name__)
            return ""

    async def get(self, challenge_id: str) -> str:
        """The proof of a verified challenge: the one journaled, else one issued now from the journal.

        ChallengeNotFound, ChallengeNotVerified, HsmUnavailable, StoreUnavailable.
        """
        checked_ref(challenge_id)
        journal = await self._store.challenge_journal(challenge_id)
        if not journal:
            raise ChallengeNotFound(challenge_id)
        stored = journaled_proof(journal)
        if stored:
            return stored
        facts = ProofFacts.from_journal(journal)
        if facts is None:
            raise ChallengeNotVerified(challenge_id)
        return await self.issue(facts)

    async def public_keys(self) -> list[PublicKey]:
        """Every proof key's public half still held, oldest first: old proofs keep verifying."""
        return await self._keys.public_keys()

    async def evidence(self, challenge_id: str) -> Evidence:
        """The challenge (while retained), its whole journal and its proof. ChallengeNotFound."""
        checked_ref(challenge_id)
        journal = await self._store.challenge_journal(challenge_id)
        try:
            challenge: Challenge | None = await self._store.get_challenge(challenge_id)
        except ChallengeNotFound:
            if not journal:
                raise
            challenge = None
        return Evidence(challenge, journal, journaled_proof(journal))


def journaled_proof(journal: list[dict[str, str]]) -> str:
    """The proof in a challenge's journal, "" when none was issued."""
    return next((e.get("proof", "") for e in journal if e.get("event") == "challenge.proof"), "")

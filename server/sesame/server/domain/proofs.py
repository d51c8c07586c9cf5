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
    FieldViolation,
    HsmUnavailable,
    InvalidRequest,
    KeyNotFound,
    StoreUnavailable,
)
from sesame.server.domain.proof import IssuedProof, ProofFacts

if TYPE_CHECKING:
    from sesame.server.domain.model import (
        Challenge,
        PublicKey,
        RefusalCount,
        VerificationAttempt,
        VerificationOutcome,
    )
    from sesame.server.domain.ports import Clock, KeyStore, StateStore

JTI_BYTES = 16  # a proof id needs to be unique, not secret: 128 random bits
DEFAULT_PAGE_SIZE = 100  # journal entries per evidence page when the caller does not say
MAX_PAGE_SIZE = 1000  # ~1.5 KB an entry at most: a page stays far below gRPC's 4 MB default message limit

_log = logging.getLogger("sesame.proofs")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What Sésame holds about one challenge, for a dispute."""

    challenge: Challenge | None  # None once purged, `retention` after its expiry
    journal: list[dict[str, str]]  # one page of its entries, oldest first; it outlives the challenge
    proof: str  # the proof journaled for it, "" when none was issued (or on a page after the first)
    next_page_token: str = ""  # where the next page of the journal starts; "" after the last
    refusals: tuple[RefusalCount, ...] = ()  # repeated refusals, counted rather than journaled


@dataclass(frozen=True, slots=True)
class EvidencePage:
    """Which page of a challenge's evidence to read."""

    token: str = ""  # the previous page's next token; "" for the first page
    size: int = 0  # entries per page, 1 to MAX_PAGE_SIZE; 0 is DEFAULT_PAGE_SIZE


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

    async def evidence(self, challenge_id: str, page: EvidencePage | None = None) -> Evidence:
        """The challenge (while retained), a page of its journal, its proof and its refusal counts.

        ChallengeNotFound; InvalidRequest for a page size out of bounds or a page token no page gave.
        """
        checked_ref(challenge_id)
        page = page or EvidencePage()
        if not 0 <= page.size <= MAX_PAGE_SIZE:
            raise InvalidRequest([FieldViolation("page_size", f"must be 0 to {MAX_PAGE_SIZE}")])
        entries = await self._store.challenge_journal_page(
            challenge_id, page.token, page.size or DEFAULT_PAGE_SIZE
        )
        try:
            challenge: Challenge | None = await self._store.get_challenge(challenge_id)
        except ChallengeNotFound:
            if not entries.entries:
                raise
            challenge = None
        # The proof entry may be on any page: read it on the first one. Journals are bounded (refusals are
        # counted, not journaled), so that read is small; only journals written before that can be long.
        stored = journaled_proof(await self._store.challenge_journal(challenge_id)) if not page.token else ""
        refusals = tuple(await self._store.challenge_refusals(challenge_id))
        return Evidence(challenge, entries.entries, stored, entries.next_token, refusals)


def journaled_proof(journal: list[dict[str, str]]) -> str:
    """The proof in a challenge's journal, "" when none was issued."""
    return next((e.get("proof", "") for e in journal if e.get("event") == "challenge.proof"), "")

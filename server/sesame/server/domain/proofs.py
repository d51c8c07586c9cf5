"""The proof flows: sign the proof of a verified challenge, give it again, publish the keys, gather evidence.

A right code's proof is named before the decision (its `jti` and key), the decision journals that name with
a VERIFIED outcome, and the proof is signed after it: the journal then fixes every byte the proof signs, in
the same atomic step as the decision, and VerifyChallenge costs one Redis round trip (decision 0026). When the
HSM fails after the decision, the challenge is spent anyway; VerifyChallenge still answers VERIFIED, with an
empty proof. GetProof signs the journaled claims again (the same header and claims) and keeps that proof,
which stands from then on (docs/decisions/0009-signed-proofs.md, 0026).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sesame.server.domain import codes, proof
from sesame.server.domain.challenges import checked_ref, user_tag
from sesame.server.domain.errors import (
    ChallengeNotFound,
    ChallengeNotVerified,
    FieldViolation,
    HsmUnavailable,
    InvalidRequest,
    JournalDisagrees,
    KeyNotFound,
    StoreUnavailable,
    UserNotFound,
)
from sesame.server.domain.log_quota import LineCeiling, LogQuota
from sesame.server.domain.model import KeyRef, ProofId
from sesame.server.domain.proof import IssuedProof, ParsedProof, ProofFacts
from sesame.server.domain.published_keys import PublishedKeys

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sesame.server.domain.model import (
        Challenge,
        PublicKey,
        RefusalCount,
        VerificationAttempt,
        VerificationOutcome,
    )
    from sesame.server.domain.ports import Clock, KeyStore, State

JTI_BYTES = 16  # a proof id needs to be unique, not secret: 128 random bits
# Decisions that named no proof and were verified since then (the instant their witness binds) have the jti
# their witness gives, and no other (decision 0167 point 7); those before may name the random one GetProof
# journaled for them.
JTI_BOUND_SINCE = datetime(2026, 12, 7, tzinfo=UTC)  # the day it landed: no release before it
DEFAULT_PAGE_SIZE = 100  # journal entries per evidence page when the caller does not say
MAX_PAGE_SIZE = 1000  # ~1.5 KB an entry at most: a page stays far below gRPC's 4 MB default message limit
# The journal entries (leaves) the seals of a user's evidence page may hold by default: ~110 bytes each in the
# answer, and a worker grows ~6 times the answer while building it: ~66 MB, ~+400 MB (decision 0145).
MAX_SEALED_LEAVES = 600_000
# The first pages of users' evidence a worker gathers at once by default: one more is shed (decision 0146).
FIRST_PAGES_AT_ONCE = 1

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


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """The key and jti of the proof a right code will carry, chosen before the decision (decision 0026)."""

    key: KeyRef
    jti: str

    @property
    def proof_id(self) -> ProofId:
        """What the decision journals: the proof's jti and the label of the key that signs it."""
        return ProofId(self.jti, self.key.label)


class ProofFlows:
    """Proofs of verified challenges, and the public keys that check them."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        store: State,
        clock: Clock,
        issuer: str,
        verifies: Callable[[ParsedProof, PublicKey], bool],
    ) -> None:
        self._keys = keys
        self._store = store
        self._clock = clock
        self._issuer = issuer
        self._verifies = verifies
        self._published = PublishedKeys(keys)

    async def plan(self) -> ProofPlan | None:
        """The key and a fresh jti for the proof of a decision about to be made; None without a proof key now.

        The current key is cached by the key store: this costs no HSM call in the common case.
        """
        try:
            key = await self._keys.current_proof_key()
        except (HsmUnavailable, KeyNotFound) as exc:
            _log.warning(
                "no proof key at hand (%s): a verified code gets its proof from GetProof", type(exc).__name__
            )
            return None
        return ProofPlan(key, secrets.token_hex(JTI_BYTES))

    async def after_verification(
        self, outcome: VerificationOutcome, attempt: VerificationAttempt, plan: ProofPlan | None
    ) -> str:
        """The proof of a decision just made VERIFIED, named by `plan` and journaled by name; "" when it
        cannot be signed now.

        The decision stands whatever happens here: the challenge is spent, so the caller must learn that it
        was VERIFIED (and execute the operation once); GetProof issues the missing proof later.
        """
        if plan is None:
            return ""
        try:
            return await self._signed(plan.key, ProofFacts.of(outcome, attempt), plan.jti)
        except (HsmUnavailable, KeyNotFound) as exc:
            _log.warning("verified without a proof (%s): GetProof will issue it", type(exc).__name__)
            return ""

    async def issue(self, facts: ProofFacts, journal: list[dict[str, str]]) -> str:
        """Sign the proof of `facts`, the journal's VERIFIED decision as the HSM checked it, keep it (and
        journal its entry when the journal names none); return the proof that stands (the first one kept).

        The jti and key the decision journaled are reused, so that the proof states exactly what the journal
        fixed, by its key if it is a published proof key, else the current one: the key named is a Redis
        field, any key of the token's signed with that label (the journal's seal key, a proof key whose public
        half is gone), and the proof, answered and kept, was one `sesame proof verify` refuses (an outside
        audit, AV1). A decision that named no proof (no proof key at hand when it was made) gets the jti its
        witness gives (`_derived_jti`): a fresh one each call minted a proof a call once the journal had left
        Redis, and let a Redis writer pick it (AW3).
        """
        named = proof.journaled_id(journal)
        if named is None:
            found = proof.verified_entries(journal)
            jti, journaled = _derived_jti("" if found is None else found[1].get("witness", "")), False
        else:
            jti, journaled = named.jti, True
            if named.kid and await self._published.key(named.kid) is not None:
                try:
                    return await self._recorded(KeyRef(named.kid), facts, jti, journaled=journaled)
                except KeyNotFound:
                    pass  # that key's private half is gone: the current key signs the same claims
        return await self._recorded(await self._keys.current_proof_key(), facts, jti, journaled=journaled)

    async def _recorded(self, key: KeyRef, facts: ProofFacts, jti: str, *, journaled: bool) -> str:
        jws = await self._signed(key, facts, jti)
        try:
            standing = await self._store.proofs.record_proof(
                IssuedProof(jws, jti, key.label, facts), self._clock.now(), journaled=journaled
            )
        except ChallengeNotFound:
            # The journal left Redis whole (archived, the challenge purged: decision 0037): nothing is left to
            # keep the proof beside. It states what the archived journal fixed (same claims and jti).
            return jws
        if standing == jws:
            return jws
        # Another proof stands: kept by a GetProof before this one, or written in Redis by someone else (the
        # kept key set between the read and the keep: answered as it was, an outside audit, AU1).
        return await self._vouched(facts.challenge_id, jti, standing)

    async def _signed(self, key: KeyRef, facts: ProofFacts, jti: str) -> str:
        signed = proof.signing_input(key.label, proof.claims(facts, issuer=self._issuer, jti=jti))
        return proof.compact(signed, await self._keys.sign(key, signed))

    async def get(self, challenge_id: str) -> str:
        """The proof of a verified challenge: the one journaled, else one issued now from the journal.

        ChallengeNotFound, ChallengeNotVerified, HsmUnavailable, StoreUnavailable.
        """
        checked_ref(challenge_id)
        journal = await self._store.journal.challenge_journal(challenge_id)
        if not journal:
            raise ChallengeNotFound(challenge_id)
        stored = await self._kept(challenge_id, journal)
        if stored:
            return stored
        facts = await self._witnessed(challenge_id, journal)
        if facts is None:
            raise ChallengeNotVerified(challenge_id)
        return await self.issue(facts, journal)

    async def _kept(self, challenge_id: str, journal: list[dict[str, str]]) -> str:
        """The proof kept for the challenge ("" when none), vouched for (`_vouched`)."""
        stored = journaled_proof(journal) or await self._store.proofs.stored_proof(challenge_id)
        if not stored:
            return ""
        named = proof.journaled_id(journal)
        return await self._vouched(challenge_id, None if named is None else named.jti, stored)

    async def _vouched(self, challenge_id: str, jti: str | None, jws: str) -> str:
        """`jws`, read from Redis, if it is a proof of this challenge (by the `jti` its decision named, when
        it named one) that verifies, low-S, under the proof key its kid names; JournalDisagrees (said by an
        ERROR) otherwise. A proof of another user's login written in its place was answered for a transfer
        (an outside audit, AS4), a copy with other claims under the real signature or made high-S (AT4), one
        appended to the journal whole (AU1). Sésame answers no proof `sesame proof verify` would refuse."""
        try:
            parsed: ParsedProof | None = proof.parse(jws)
        except ValueError:
            parsed = None
        claims = parsed.claims if parsed is not None else {}
        if claims.get("challenge_id") != challenge_id or (jti is not None and claims.get("jti") != jti):
            raise _said(JournalDisagrees("the proof kept is not the one its decision named"), challenge_id)
        key = await self._published.key(parsed.kid) if parsed is not None else None
        if parsed is None or key is None or not self._verifies(parsed, key):
            refusal = JournalDisagrees("the proof kept does not verify under Sésame's proof keys")
            raise _said(refusal, challenge_id)
        return jws

    async def _witnessed(self, challenge_id: str, journal: list[dict[str, str]]) -> ProofFacts | None:
        """The facts of the journal's VERIFIED decision, once the HSM has checked that Sésame made it
        (`_made_here`, decision 0167). None without such a decision; JournalDisagrees (said by an ERROR) for
        one Sésame did not make.

        Signed on the journal's word alone, one XADD in Redis got a proof, and a bundle that checked valid,
        of an authentication that never happened (an outside audit).
        """
        try:
            found = proof.verified_entries(journal)
        except JournalDisagrees as exc:
            raise _said(exc, challenge_id) from None
        if found is None:
            return None
        facts = await self._made_here(challenge_id, journal, *found)
        if facts is None:
            raise _said(JournalDisagrees("the VERIFIED decision is not one the HSM witnessed"), challenge_id)
        return facts

    async def _made_here(
        self,
        challenge_id: str,
        journal: list[dict[str, str]],
        opened: Mapping[str, str],
        verified: Mapping[str, str],
    ) -> ProofFacts | None:
        """The facts of the journal's VERIFIED decision `verified` if it is the one Sésame made for this
        challenge, else None: its witness, recomputed by the HSM over the challenge's nonce and the decision's
        operation, instant and context, is the one journaled, and so is its opening's (the operation's kind,
        the first factor stated at Start: an outside audit, AP1); the key version is the challenge id's; its
        user is the one the id's tag names, and its client that user's (a journal rewritten whole named
        another: an outside audit)."""
        try:
            facts = ProofFacts.from_journal(journal)
            op_digest = bytes.fromhex(facts.op_digest) if facts is not None else b""
        except (ValueError, KeyError):
            return None  # a field the journal cannot give back: not a decision Sésame wrote
        ref = checked_ref(challenge_id)
        if (
            facts is None
            or facts.challenge_id != challenge_id
            or user_tag(facts.user_id) != ref.user_tag
            or facts.key_version != ref.key_version
        ):
            return None
        _, key = await codes.witnessed(
            self._keys, key_version=ref.key_version, digits=ref.digits, nonce=ref.nonce, op_digest=op_digest
        )
        # The decision's witness binds the jti of the proof it named (AV2); one that named none, as one
        # journaled before the jti was bound, bound none (a proof entry appended by GetProof then names one:
        # since JTI_BOUND_SINCE, the one its witness gives, `_derived_jti`, and no other, AW3).
        named = proof.journaled_id(journal)
        jtis = ("",) if named is None else ("", named.jti)
        at, context = facts.verified_at, facts.context
        decisions = {jti: codes.witness(key, proof.decided(challenge_id, at, context, jti)) for jti in jtis}
        opening = codes.witness(
            key,
            proof.opening_stated(challenge_id, facts.user_id, facts.op, facts.op_digest, facts.start_factor),
        )
        witness = verified.get("witness", "")
        bound = next((jti for jti, made in decisions.items() if codes.same_witness(made, witness)), None)
        if bound is None or not codes.same_witness(opening, opened.get("witness", "")):
            return None
        if not bound and named is not None and at >= JTI_BOUND_SINCE and named.jti != _derived_jti(witness):
            return None  # a jti written in Redis for a decision that named none
        try:
            enrolled = await self._store.users.get_user(facts.user_id)
        except UserNotFound:
            return None  # a user's record is never deleted: taken out, it named no client (audit AS3)
        return facts if enrolled.client_id == facts.client_id else None

    async def public_keys(self) -> list[PublicKey]:
        """Every proof key's public half still held, oldest first: old proofs keep verifying. Read from the
        key store at most once a second, and always with the key new proofs are signed with (`PublishedKeys`):
        a key made by another worker may be missing for up to a second."""
        return await self._published.all()

    async def evidence(self, challenge_id: str, page: EvidencePage | None = None) -> Evidence:
        """The challenge (while retained), a page of its journal, its proof and its refusal counts.

        ChallengeNotFound; InvalidRequest for a page size out of bounds or a page token no page gave.
        """
        checked_ref(challenge_id)
        page = page or EvidencePage()
        if not 0 <= page.size <= MAX_PAGE_SIZE:
            raise InvalidRequest([FieldViolation("page_size", f"must be 0 to {MAX_PAGE_SIZE}")])
        # The proof entry may be on any page: read it on the first one. Journals are bounded (refusals are
        # counted, not journaled), so that read is small; only journals written before that can be long. A
        # verified decision whose proof was not kept yet gets it now, signed again (decision 0026), before
        # the page is read: a decision that named no proof then shows its entry on the page.
        stored = await self._journaled_or_issued(challenge_id) if not page.token else ""
        entries = await self._store.journal.challenge_journal_page(
            challenge_id, page.token, page.size or DEFAULT_PAGE_SIZE
        )
        try:
            challenge: Challenge | None = await self._store.challenges.get_challenge(challenge_id)
        except ChallengeNotFound:
            if not entries.entries:
                raise
            challenge = None
        refusals = tuple(await self._store.journal.challenge_refusals(challenge_id))
        return Evidence(challenge, entries.entries, stored, entries.next_token, refusals)

    async def _journaled_or_issued(self, challenge_id: str) -> str:
        """The journaled proof; else the proof of a journaled VERIFIED decision, issued now; else ""."""
        journal = await self._store.journal.challenge_journal(challenge_id)
        try:
            stored = await self._kept(challenge_id, journal)
            if stored:
                return stored
            facts = await self._witnessed(challenge_id, journal)
            return "" if facts is None else await self.issue(facts, journal)
        except JournalDisagrees:
            return ""  # the journal is shown as it is; its ERROR was said
        except (HsmUnavailable, KeyNotFound, StoreUnavailable) as exc:
            _log.warning("evidence without a proof (%s): GetProof will issue it", type(exc).__name__)
            return ""


class Disagreements:
    """The ERROR of a refused journal: once a minute per reason and challenge, and at most `most` a minute
    per reason, each line counting those held back. A kept proof altered once in Redis and GetProof repeated
    by one caller wrote two ERROR lines a call, 1 MB of log a second (an outside audit, AV4); a quota per
    reason alone let a decoy, altered and asked once a minute, keep another challenge's tampering out of the
    ERROR lines (AW5); one per challenge alone let journals forged under made-up ids write a line a call
    again (AX1)."""

    def __init__(self, most: int = 100, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._each: LogQuota[tuple[str, str]] = LogQuota(60.0, monotonic, bound=4096)
        self._all: LineCeiling[str] = LineCeiling(most, 60.0, monotonic)

    def said(self, refusal: JournalDisagrees, challenge_id: str) -> JournalDisagrees:
        """`refusal`, its ERROR said unless held back."""
        reason = str(refusal)
        held = self._each.admit((reason, challenge_id))
        if held is None:
            return refusal
        over = self._all.admit(reason)
        if over is not None:
            _log.error(
                "a challenge's journal holds a decision Sésame did not make (%s): no proof signed%s%s",
                refusal,
                self._each.held_back(held, "such refusals of this challenge"),
                self._each.held_back(over, "such refusals of other challenges"),
            )
        return refusal


_DISAGREEMENTS = Disagreements()
_said = _DISAGREEMENTS.said


def _derived_jti(witness: str) -> str:
    """The jti of the proof of a VERIFIED decision that named none: 128 bits of a hash of the decision's
    witness, which the HSM made and `_made_here` checked. The same every call, and for no two decisions."""
    return hashlib.sha256(b"sesame-jti\x00" + witness.encode()).hexdigest()[: 2 * JTI_BYTES]


def journaled_proof(journal: list[dict[str, str]]) -> str:
    """The whole proof in a challenge's journal, as journaled before decision 0026 (in any proof entry: one
    appended after the decision's own is answered only if it is the decision's, `_vouched`); "" otherwise."""
    return next((e["proof"] for e in journal if e.get("event") == "challenge.proof" and e.get("proof")), "")

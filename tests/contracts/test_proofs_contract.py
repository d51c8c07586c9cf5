"""The Proofs contract: the fake and Redis keep a proof alike, once, from the journal."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from sesame.server.domain.errors import ChallengeNotFound
from sesame.server.domain.model import Challenge, ProofId, VerificationOutcome, VerifyResult
from sesame.server.domain.proof import IssuedProof, ProofFacts
from tests.contracts.state_cases import LOCKOUT, NOW, UNKNOWN_ID, Store, a_challenge, an_attempt, opened


async def verified(store: Store) -> tuple[Challenge, ProofFacts]:
    """An opened challenge, verified, and the facts a proof of it states."""
    challenge = await opened(store)
    attempt = an_attempt(challenge, code_matches=True)
    outcome = await store.challenges.record_verification(attempt, LOCKOUT)
    return challenge, ProofFacts.of(outcome, attempt)


def a_proof(facts: ProofFacts, jti: str = "jti-1") -> IssuedProof:
    return IssuedProof(f"header.claims.{jti}", jti, "sesame-proof-v1", facts)


class TestProofs:
    """The proof of a verified challenge: journaled once, from the journal alone."""

    async def test_a_proof_is_journaled_with_its_id_and_key(self, store):
        """For a decision that named no proof, record_proof appends challenge.proof with its jti and kid,
        keeps the JWS beside the journal and returns it."""
        challenge, facts = await verified(store)
        assert (
            await store.proofs.record_proof(a_proof(facts), NOW + timedelta(minutes=1), journaled=False)
            == "header.claims.jti-1"
        )
        entry = (await store.journal.challenge_journal(challenge.challenge_id))[-1]
        assert (entry["event"], entry["outcome"], entry["status"]) == (
            "challenge.proof",
            "issued",
            "verified",
        )
        assert (entry["jti"], entry["kid"], "proof" in entry) == ("jti-1", "sesame-proof-v1", False)
        assert (entry["user_id"], entry["attempts"]) == ("u-1", "1")
        assert await store.proofs.stored_proof(challenge.challenge_id) == "header.claims.jti-1"

    async def test_the_first_proof_stands(self, store):
        """A second proof for the same challenge is dropped: the first is returned and journaled alone."""
        challenge, facts = await verified(store)
        await store.proofs.record_proof(a_proof(facts, "jti-1"), NOW, journaled=False)
        assert (
            await store.proofs.record_proof(a_proof(facts, "jti-2"), NOW, journaled=False)
            == "header.claims.jti-1"
        )
        events = [e["event"] for e in await store.journal.challenge_journal(challenge.challenge_id)]
        assert events.count("challenge.proof") == 1

    async def test_a_journal_the_caller_read_naming_the_proof_gets_no_entry(self, store):
        """The caller read the journal from its authority: told it names the proof, record_proof keeps the
        JWS and appends no entry (an outside audit, AW1: Redis's own mark, cleared, had a second entry
        appended and sealed for good)."""
        challenge, facts = await verified(store)
        before = len(await store.journal.challenge_journal(challenge.challenge_id))
        assert await store.proofs.record_proof(a_proof(facts), NOW, journaled=True) == "header.claims.jti-1"
        assert len(await store.journal.challenge_journal(challenge.challenge_id)) == before

    async def test_an_entry_the_journal_holds_is_not_appended_again(self, store):
        """Told the journal names none while it holds the decision's own entry (a read older than the step),
        record_proof appends no second one: the fake and Redis agree (the state model found them apart)."""
        challenge = await opened(store)
        right = dataclasses.replace(
            an_attempt(challenge, code_matches=True), proof_id=ProofId("j-1", "kid-1")
        )
        facts = ProofFacts.of(await store.challenges.record_verification(right, LOCKOUT), right)
        await store.proofs.record_proof(a_proof(facts, "j-1"), NOW, journaled=False)
        events = [e["event"] for e in await store.journal.challenge_journal(challenge.challenge_id)]
        assert events.count("challenge.proof") == 1

    async def test_a_racing_call_appends_no_second_entry(self, store):
        """Told the journal names none by two calls of the same decision: one entry (the first call's)."""
        challenge, facts = await verified(store)
        for jws in ("header.claims.a", "header.claims.b"):
            await store.proofs.record_proof(
                dataclasses.replace(a_proof(facts), jws=jws), NOW, journaled=False
            )
        events = [e["event"] for e in await store.journal.challenge_journal(challenge.challenge_id)]
        assert events.count("challenge.proof") == 1

    async def test_no_proof_for_a_challenge_never_opened(self, store):
        """record_proof for an id without a journal raises ChallengeNotFound."""
        challenge = a_challenge()
        outcome = VerificationOutcome(VerifyResult.VERIFIED, 0, challenge)
        facts = ProofFacts.of(outcome, an_attempt(challenge, code_matches=True))
        with pytest.raises(ChallengeNotFound):
            await store.proofs.record_proof(a_proof(facts), NOW, journaled=False)

    async def test_a_verified_decision_journals_the_proof_it_names(self, store):
        """The jti and kid an attempt names are journaled in a challenge.proof entry by a VERIFIED decision
        alone (decision 0026); a wrong code or a refusal naming one journals none. record_proof then keeps
        the JWS and appends no second entry; the first JWS kept stands."""
        challenge = await opened(store)
        named = dataclasses.replace(an_attempt(challenge, code_matches=False), proof_id=ProofId("j-0", "k"))
        await store.challenges.record_verification(named, LOCKOUT)
        right = dataclasses.replace(
            an_attempt(challenge, code_matches=True), proof_id=ProofId("j-1", "kid-1")
        )
        outcome = await store.challenges.record_verification(right, LOCKOUT)
        assert outcome.result is VerifyResult.VERIFIED
        replayed = dataclasses.replace(right, proof_id=ProofId("j-2", "kid-1"))
        assert (
            await store.challenges.record_verification(replayed, LOCKOUT)
        ).result is VerifyResult.ALREADY_USED
        journal = await store.journal.challenge_journal(challenge.challenge_id)
        assert [(e["event"], e["outcome"], e.get("jti"), e.get("kid")) for e in journal[1:]] == [
            ("challenge.verification", "wrong_code", None, None),
            ("challenge.verification", "verified", None, None),
            ("challenge.proof", "issued", "j-1", "kid-1"),
            ("challenge.verification", "already_used", None, None),
        ]
        assert (journal[-2]["user_id"], journal[-2]["attempts"], journal[-2]["status"]) == (
            "u-1",
            "2",
            "verified",
        )
        assert await store.proofs.stored_proof(challenge.challenge_id) == ""
        facts = ProofFacts.of(outcome, right)
        assert (
            await store.proofs.record_proof(a_proof(facts, "j-1"), NOW, journaled=True) == "header.claims.j-1"
        )
        assert (
            await store.proofs.record_proof(a_proof(facts, "j-1b"), NOW, journaled=True)
            == "header.claims.j-1"
        )
        assert await store.proofs.stored_proof(challenge.challenge_id) == "header.claims.j-1"
        assert len(await store.journal.challenge_journal(challenge.challenge_id)) == len(journal)

    async def test_the_journal_of_an_unknown_challenge_is_empty(self, store):
        """challenge_journal of an id never opened is an empty list, not an error."""
        assert await store.journal.challenge_journal(UNKNOWN_ID) == []

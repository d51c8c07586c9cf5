"""The ChallengeJournal contract: the fake and Redis journal alike, bounded, paged, never a full number."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sesame.server.domain.errors import ChallengeClosed, InvalidRequest, ResendRefused
from sesame.server.domain.model import DeliveryState, JournalPage, RefusalCount, VerifyResult
from tests.contracts.state_cases import CONTEXT, LOCKOUT, NOW, PHONE, UNKNOWN_ID, a_user, an_attempt, opened


class TestBoundedJournal:
    """Refusals anyone can repeat are journaled once per kind and counted; journals are read by page."""

    async def test_repeated_refused_verifications_are_journaled_once_and_counted(self, store):
        """Five right codes on a spent challenge: one already_used entry, a count of five, the last time."""
        challenge = await opened(store)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=True), LOCKOUT)
        for second in range(5):
            attempt = an_attempt(challenge, code_matches=True, at=NOW + timedelta(seconds=40 + second))
            outcome = await store.challenges.record_verification(attempt, LOCKOUT)
            assert outcome.result is VerifyResult.ALREADY_USED
        outcomes = [e["outcome"] for e in await store.journal.challenge_journal(challenge.challenge_id)]
        assert outcomes == ["opened", "verified", "already_used"]
        assert await store.journal.challenge_refusals(challenge.challenge_id) == [
            RefusalCount("challenge.verification", "already_used", 5, NOW + timedelta(seconds=44))
        ]

    async def test_repeated_refused_resends_and_cancels_are_journaled_once_each(self, store):
        """Two too-soon resends, then three closed resends and three cancels of a cancelled challenge."""
        challenge = await opened(store)
        for _ in range(2):
            with pytest.raises(ResendRefused):
                await store.challenges.record_resend(challenge.challenge_id, NOW, CONTEXT)
        await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        for _ in range(3):
            with pytest.raises(ChallengeClosed):
                await store.challenges.record_resend(challenge.challenge_id, NOW, CONTEXT)
            with pytest.raises(ChallengeClosed):
                await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        entries = await store.journal.challenge_journal(challenge.challenge_id)
        assert [(e["event"], e["outcome"]) for e in entries[1:]] == [
            ("challenge.resend", "too_soon"),
            ("challenge.cancel", "cancelled"),
            ("challenge.resend", "closed"),
            ("challenge.cancel", "refused"),
        ]
        counts = await store.journal.challenge_refusals(challenge.challenge_id)
        assert [(c.event, c.outcome, c.count) for c in counts] == [
            ("challenge.cancel", "refused", 3),
            ("challenge.resend", "closed", 3),
            ("challenge.resend", "too_soon", 2),
        ]

    async def test_accepted_transitions_are_not_counted_as_refusals(self, store):
        """A wrong code, a resend and a cancel that are accepted leave no refusal count."""
        challenge = await opened(store, resend_spacing=timedelta(0))
        await store.challenges.record_verification(an_attempt(challenge, code_matches=False), LOCKOUT)
        await store.challenges.record_resend(challenge.challenge_id, NOW, CONTEXT)
        await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        assert await store.journal.challenge_refusals(challenge.challenge_id) == []

    async def test_a_journal_reads_page_by_page(self, store):
        """Pages of two give the whole journal in order, and the last page has no next token."""
        challenge = await opened(store)
        for ref in ("m1", "m2", "m3", "m4"):
            await store.challenges.record_delivery(challenge.challenge_id, DeliveryState.SENT, ref, NOW)
        pages, token = [], ""
        while True:
            page = await store.journal.challenge_journal_page(challenge.challenge_id, token, 2)
            pages.append(page.entries)
            if not (token := page.next_token):
                break
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [e for p in pages for e in p] == await store.journal.challenge_journal(challenge.challenge_id)

    async def test_a_journal_that_fits_one_page_has_no_next_token(self, store):
        """A page as long as the journal ends it; an unknown challenge gives an empty page."""
        challenge = await opened(store)
        page = await store.journal.challenge_journal_page(challenge.challenge_id, "", 1)
        assert (len(page.entries), page.next_token) == (1, "")
        assert await store.journal.challenge_journal_page(UNKNOWN_ID, "", 10) == JournalPage([], "")

    @pytest.mark.parametrize("token", ["x", "1-", "-1", "1-2-3", "1" * 21 + "-0"])
    async def test_a_malformed_page_token_is_invalid(self, store, token):
        """A token that no page gives raises InvalidRequest on `page_token`."""
        challenge = await opened(store)
        with pytest.raises(InvalidRequest) as caught:
            await store.journal.challenge_journal_page(challenge.challenge_id, token, 10)
        assert caught.value.violations[0].field == "page_token"


class TestJournalPrivacy:
    async def test_no_entry_holds_the_full_phone(self, store):
        """Across a whole life cycle no journal entry contains the full secure phone number."""
        await store.users.register_user(a_user())
        challenge = await opened(store)
        await store.challenges.record_delivery(challenge.challenge_id, DeliveryState.SENT, "ref-1", NOW)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=False), LOCKOUT)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=True), LOCKOUT)
        entries = [
            *await store.users.user_journal("u-1"),
            *await store.journal.challenge_journal(challenge.challenge_id),
        ]
        assert len(entries) == 7  # the user: enrolled, failed, reset; the challenge: four
        assert not any(PHONE in value or PHONE[1:] in value for e in entries for value in e.values())

"""The Challenges contract: the in-memory fake and Redis must answer alike, branch by branch (Start's one
step in test_start_challenge_contract.py, send budgets in test_send_budget_contract.py)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from sesame.server.domain.errors import (
    ChallengeAlreadyExists,
    ChallengeClosed,
    ChallengeNotFound,
    ResendRefused,
)
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    LockoutPolicy,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.operation import Login, Money, digest
from tests import factories
from tests.contracts.state_cases import (
    CONTEXT,
    LOCKOUT,
    NOW,
    OPERATIONS,
    TRANSFER,
    UNKNOWN_ID,
    Store,
    a_challenge,
    a_user,
    an_attempt,
    opened,
    reported,
)


class TestLockout:
    """Wrong codes in a row per user (RTS Art. 4(3)(b)), decided in the same step as the attempt."""

    POLICY = LockoutPolicy(
        max_failures=3, first_block=timedelta(minutes=15), longest_block=timedelta(hours=1)
    )

    async def day_long(self, store: Store, at: datetime = NOW) -> Challenge:
        """Open a day-long challenge at `at` (a blocked user gets none: open it before the block)."""
        self.opened = number = getattr(self, "opened", 0) + 1  # one nonce each (pytest: an instance per test)
        challenge = a_challenge(
            nonce=bytes([number]) * 16,
            created_at=at,
            last_sent_at=at,
            expires_at=at + timedelta(days=1),
            max_attempts=10,
        )
        await store.challenges.open_challenge(challenge, CONTEXT)
        return challenge

    async def guesses(
        self, store: Store, *matches: bool, at: datetime = NOW, opened: Challenge | None = None
    ) -> list[VerificationOutcome]:
        """Submit one code per value of `matches` at `at`, on `opened` or on a new day-long challenge."""
        challenge = opened or await self.day_long(store, at)
        return [
            await store.challenges.record_verification(
                an_attempt(challenge, code_matches=m, at=at), self.POLICY
            )
            for m in matches
        ]

    async def test_wrong_codes_are_counted_for_the_user(self, store):
        """Each wrong code adds one to the user's count, across challenges; no block before the limit."""
        await store.users.register_user(a_user())
        await self.guesses(store, False)
        [outcome] = await self.guesses(store, False)
        user = await store.users.get_user("u-1")
        assert (user.failures, user.blocks, user.blocked_until, outcome.blocked_until) == (2, 0, None, None)

    async def test_the_limit_blocks_and_restarts_the_count(self, store):
        """The third wrong code in a row blocks the user for 15 minutes, says so, and the count restarts."""
        await store.users.register_user(a_user())
        *_, third = await self.guesses(store, False, False, False)
        assert third.result is VerifyResult.WRONG_CODE
        assert third.blocked_until == NOW + timedelta(minutes=15)
        user = await store.users.get_user("u-1")
        assert (user.failures, user.blocks, user.blocked_until) == (0, 1, NOW + timedelta(minutes=15))

    async def test_no_code_of_a_blocked_user_is_evaluated(self, store):
        """While blocked, a right and a wrong code on an open challenge are USER_BLOCKED, uncounted."""
        await store.users.register_user(a_user())
        opened_before = await self.day_long(store)
        await self.guesses(store, False, False, False)
        outcomes = await self.guesses(
            store, True, False, at=NOW + timedelta(minutes=14), opened=opened_before
        )
        assert [o.result for o in outcomes] == [VerifyResult.USER_BLOCKED] * 2
        assert (outcomes[-1].challenge.status, outcomes[-1].challenge.attempts) == (ChallengeStatus.OPEN, 0)
        user = await store.users.get_user("u-1")
        assert (user.failures, user.blocks) == (0, 1)

    async def test_a_closed_challenge_answers_before_the_block(self, store):
        """A verified challenge still answers ALREADY_USED while its user is blocked."""
        await store.users.register_user(a_user())
        [verified] = await self.guesses(store, True)
        await self.guesses(store, False, False, False)
        again = await store.challenges.record_verification(
            an_attempt(verified.challenge, code_matches=True, at=NOW + timedelta(minutes=1)), self.POLICY
        )
        assert again.result is VerifyResult.ALREADY_USED

    async def test_codes_count_again_once_the_block_ends(self, store):
        """At the block's end a wrong code counts again and a right one verifies."""
        await store.users.register_user(a_user())
        await self.guesses(store, False, False, False)
        end = NOW + timedelta(minutes=15)
        outcomes = await self.guesses(store, False, True, at=end)
        assert [o.result for o in outcomes] == [VerifyResult.WRONG_CODE, VerifyResult.VERIFIED]

    async def test_blocks_in_a_row_double_up_to_the_longest(self, store):
        """The second block lasts 30 minutes, the third and later ones the one-hour cap."""
        await store.users.register_user(a_user())
        at, lengths = NOW, []
        for _ in range(4):
            *_, last = await self.guesses(store, False, False, False, at=at)
            assert last.blocked_until is not None
            lengths.append(last.blocked_until - at)
            at = last.blocked_until
        assert lengths == [timedelta(minutes=m) for m in (15, 30, 60, 60)]

    async def test_a_right_code_starts_everything_again(self, store):
        """After a right code the count, the blocks and the block itself are gone."""
        await store.users.register_user(a_user())
        await self.guesses(store, False, False, False)
        await self.guesses(store, False, True, at=NOW + timedelta(minutes=15))
        user = await store.users.get_user("u-1")
        assert (user.failures, user.blocks, user.blocked_until) == (0, 0, None)

    async def test_failures_and_blocks_are_journaled(self, store):
        """Every counted failure and the reset are user journal entries naming the challenge."""
        await store.users.register_user(a_user())
        [verified] = await self.guesses(store, True)
        await self.guesses(store, False, False, False)
        await self.guesses(store, False, True, at=NOW + timedelta(minutes=15))
        entries = (await store.users.user_journal("u-1"))[1:]
        assert [(e["event"], e["outcome"], e["failures"], e["blocks"]) for e in entries] == [
            ("user.failed_attempt", "counted", "1", "0"),
            ("user.failed_attempt", "counted", "2", "0"),
            ("user.failed_attempt", "blocked", "0", "1"),
            ("user.failed_attempt", "counted", "1", "1"),
            ("user.successful_attempt", "reset", "0", "0"),
        ]
        assert all(e["challenge_id"] for e in entries)
        assert verified.challenge.challenge_id not in {e["challenge_id"] for e in entries}

    async def test_an_id_with_a_forged_user_tag_is_not_found(self, store):
        """The challenge's id with another user's tag raises ChallengeNotFound and changes nothing."""
        await store.users.register_user(a_user())
        challenge = await opened(store)
        forged = factories.challenge_id(challenge.nonce, user_id="u-2")
        attempt = dataclasses.replace(an_attempt(challenge, code_matches=False), challenge_id=forged)
        with pytest.raises(ChallengeNotFound):
            await store.challenges.record_verification(attempt, self.POLICY)
        assert (await store.challenges.get_challenge(challenge.challenge_id)).attempts == 0


class TestChallenges:
    @pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: type(op).__name__)
    async def test_opened_challenge_reads_back_equal(self, store, operation):
        """Every operation type round-trips through the store unchanged."""
        challenge = await opened(store, operation=operation)
        assert await store.challenges.get_challenge(challenge.challenge_id) == challenge

    async def test_times_are_kept_to_the_millisecond(self, store):
        """Sub-millisecond parts of the times are dropped, as the store keeps Unix milliseconds."""
        challenge = await opened(store, created_at=NOW + timedelta(microseconds=1999))
        stored = await store.challenges.get_challenge(challenge.challenge_id)
        assert stored.created_at == NOW + timedelta(milliseconds=1)
        assert stored.created_at.tzinfo is not None

    async def test_an_id_is_never_opened_twice(self, store):
        """Opening a challenge under a used id raises ChallengeAlreadyExists and keeps the first."""
        first = await opened(store)
        with pytest.raises(ChallengeAlreadyExists):
            await store.challenges.open_challenge(a_challenge(operation=Login()), CONTEXT)
        assert await store.challenges.get_challenge(first.challenge_id) == first

    async def test_challenge_past_its_retention_is_gone_but_its_journal_stays(self, store):
        """Once expiry plus retention has passed the challenge is purged; its journal remains as evidence."""
        challenge = await opened(
            store,
            created_at=NOW - timedelta(days=2),
            expires_at=NOW - timedelta(days=2) + timedelta(minutes=5),
        )
        with pytest.raises(ChallengeNotFound):
            await store.challenges.get_challenge(challenge.challenge_id)
        assert [e["event"] for e in await store.journal.challenge_journal(challenge.challenge_id)] == [
            "challenge.opened"
        ]

    async def test_a_purged_id_is_not_reused(self, store):
        """An id whose challenge was purged cannot be opened again: its journal still names it."""
        old = NOW - timedelta(days=2)
        await opened(store, created_at=old, expires_at=old + timedelta(minutes=5))
        with pytest.raises(ChallengeAlreadyExists):
            await store.challenges.open_challenge(a_challenge(), CONTEXT)

    async def test_unknown_challenge_is_not_found(self, store):
        """Reading a challenge never opened raises ChallengeNotFound."""
        with pytest.raises(ChallengeNotFound):
            await store.challenges.get_challenge(UNKNOWN_ID)

    async def test_opening_is_journaled_with_digest_context_and_masked_phone(self, store):
        """challenge.opened names the operation digest, the caller's context and the masked phone."""
        challenge = await opened(store)
        [entry] = await store.journal.challenge_journal(challenge.challenge_id)
        assert entry["event"] == "challenge.opened"
        assert entry["op_digest"] == challenge.op_digest.hex()
        assert (entry["ip"], entry["device_id"], entry["session_id"]) == ("203.0.113.7", "dev-1", "sess-1")
        assert entry["phone"] == "+33*******78"

    async def test_opening_is_journaled_with_the_operation_type(self, store):
        """challenge.opened names the operation's type, which a proof issued later states."""
        challenge = await opened(store)
        [entry] = await store.journal.challenge_journal(challenge.challenge_id)
        assert (entry["op"], entry["key_version"]) == ("credit_transfer", "1")


class TestVerification:
    async def test_right_code_verifies(self, store):
        """The right code for the right operation gives VERIFIED and consumes the challenge."""
        challenge = await opened(store)
        outcome = await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True), LOCKOUT
        )
        assert (outcome.result, outcome.attempts_left) == (VerifyResult.VERIFIED, 0)
        assert (outcome.challenge.status, outcome.challenge.attempts) == (ChallengeStatus.VERIFIED, 1)
        assert await store.challenges.get_challenge(challenge.challenge_id) == outcome.challenge

    async def test_wrong_code_counts_and_leaves_attempts(self, store):
        """A wrong code gives WRONG_CODE, counts one attempt and leaves the challenge open."""
        challenge = await opened(store)
        outcome = await store.challenges.record_verification(
            an_attempt(challenge, code_matches=False), LOCKOUT
        )
        assert (outcome.result, outcome.attempts_left) == (VerifyResult.WRONG_CODE, 2)
        assert (outcome.challenge.status, outcome.challenge.attempts) == (ChallengeStatus.OPEN, 1)

    async def test_last_wrong_code_locks(self, store):
        """The wrong code that spends the last attempt still answers WRONG_CODE, with none left, and locks."""
        challenge = await opened(store)
        outcomes = [
            await store.challenges.record_verification(an_attempt(challenge, code_matches=False), LOCKOUT)
            for _ in range(3)
        ]
        assert [o.attempts_left for o in outcomes] == [2, 1, 0]
        assert outcomes[-1].result is VerifyResult.WRONG_CODE
        assert outcomes[-1].challenge.status is ChallengeStatus.LOCKED

    async def test_locked_challenge_refuses_the_right_code_without_counting(self, store):
        """After the lock even the right code answers LOCKED, and the attempt count stays put."""
        challenge = await opened(store, max_attempts=1)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=False), LOCKOUT)
        outcome = await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True), LOCKOUT
        )
        assert (outcome.result, outcome.attempts_left) == (VerifyResult.LOCKED, 0)
        assert outcome.challenge.attempts == 1

    async def test_foreign_operation_voids_the_challenge(self, store):
        """A right code for another operation gives OPERATION_MISMATCH, counts, and voids the challenge."""
        challenge = await opened(store)
        other = dataclasses.replace(TRANSFER, amount=Money("EUR", 125001))
        outcome = await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True, operation=other), LOCKOUT
        )
        assert outcome.result is VerifyResult.OPERATION_MISMATCH
        assert (outcome.challenge.status, outcome.challenge.attempts) == (ChallengeStatus.VOIDED, 1)

    async def test_voided_challenge_refuses_the_right_code(self, store):
        """After a mismatch the right code for the right operation answers VOIDED."""
        challenge = await opened(store)
        await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True, operation=Login()), LOCKOUT
        )
        outcome = await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True), LOCKOUT
        )
        assert outcome.result is VerifyResult.VOIDED
        assert outcome.challenge.attempts == 1

    async def test_attempt_at_expiry_is_expired_and_not_counted(self, store):
        """An attempt at the expiry instant answers EXPIRED without counting or closing anything."""
        challenge = await opened(store)
        outcome = await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True, at=challenge.expires_at), LOCKOUT
        )
        assert (outcome.result, outcome.attempts_left) == (VerifyResult.EXPIRED, 0)
        assert (outcome.challenge.status, outcome.challenge.attempts) == (ChallengeStatus.OPEN, 0)

    async def test_attempt_just_before_expiry_still_counts(self, store):
        """One millisecond before expiry the attempt is judged normally."""
        challenge = await opened(store)
        at = challenge.expires_at - timedelta(milliseconds=1)
        outcome = await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True, at=at), LOCKOUT
        )
        assert outcome.result is VerifyResult.VERIFIED

    async def test_second_right_code_is_already_used(self, store):
        """A verified challenge answers ALREADY_USED and does not count the replay."""
        challenge = await opened(store)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=True), LOCKOUT)
        outcome = await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True), LOCKOUT
        )
        assert (outcome.result, outcome.challenge.attempts) == (VerifyResult.ALREADY_USED, 1)

    async def test_cancelled_challenge_answers_voided(self, store):
        """Verifying a cancelled challenge answers VOIDED."""
        challenge = await opened(store)
        await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        outcome = await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True), LOCKOUT
        )
        assert (outcome.result, outcome.challenge.attempts) == (VerifyResult.VOIDED, 0)

    async def test_unknown_challenge_is_not_found(self, store):
        """Verifying a challenge never opened raises ChallengeNotFound."""
        with pytest.raises(ChallengeNotFound):
            await store.challenges.record_verification(an_attempt(a_challenge(), code_matches=True), LOCKOUT)

    async def test_every_attempt_is_journaled_including_refusals(self, store):
        """Each call, refused ones too, appends an entry with its outcome, count and the caller's context."""
        challenge = await opened(store)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=False), LOCKOUT)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=True), LOCKOUT)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=True), LOCKOUT)
        entries = (await store.journal.challenge_journal(challenge.challenge_id))[1:]
        assert [(e["event"], e["outcome"], e["attempts"]) for e in entries] == [
            ("challenge.verification", "wrong_code", "1"),
            ("challenge.verification", "verified", "2"),
            ("challenge.verification", "already_used", "2"),
        ]
        assert all(e["session_id"] == "sess-1" and e["user_id"] == "u-1" for e in entries)

    async def test_mismatch_journals_the_submitted_digest(self, store):
        """The journal of a mismatch shows the digest that was submitted, not the stored one."""
        challenge = await opened(store)
        await store.challenges.record_verification(
            an_attempt(challenge, code_matches=True, operation=Login()), LOCKOUT
        )
        entry = (await store.journal.challenge_journal(challenge.challenge_id))[-1]
        assert (entry["outcome"], entry["op_digest"]) == ("operation_mismatch", digest(Login()).hex())


class TestCancel:
    async def test_open_challenge_is_cancelled(self, store):
        """Cancelling an open challenge returns and stores it CANCELLED."""
        challenge = await opened(store)
        cancelled = await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        assert cancelled == dataclasses.replace(challenge, status=ChallengeStatus.CANCELLED)
        assert await store.challenges.get_challenge(challenge.challenge_id) == cancelled

    async def test_cancelling_twice_is_refused(self, store):
        """A cancelled challenge cannot be cancelled again."""
        challenge = await opened(store)
        await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        with pytest.raises(ChallengeClosed):
            await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)

    async def test_verified_challenge_cannot_be_cancelled(self, store):
        """A verified challenge stays VERIFIED when a cancel arrives."""
        challenge = await opened(store)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=True), LOCKOUT)
        with pytest.raises(ChallengeClosed):
            await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        assert (
            await store.challenges.get_challenge(challenge.challenge_id)
        ).status is ChallengeStatus.VERIFIED

    async def test_expired_challenge_cannot_be_cancelled(self, store):
        """A cancel at or after expiry raises ChallengeClosed."""
        challenge = await opened(store)
        with pytest.raises(ChallengeClosed):
            await store.challenges.cancel_challenge(challenge.challenge_id, challenge.expires_at, CONTEXT)

    async def test_unknown_challenge_is_not_found(self, store):
        """Cancelling a challenge never opened raises ChallengeNotFound."""
        with pytest.raises(ChallengeNotFound):
            await store.challenges.cancel_challenge(UNKNOWN_ID, NOW, CONTEXT)

    async def test_cancel_and_refusal_are_journaled(self, store):
        """Both a cancel and a refused cancel leave a challenge.cancel entry with their outcome."""
        challenge = await opened(store)
        await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        with pytest.raises(ChallengeClosed):
            await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        entries = (await store.journal.challenge_journal(challenge.challenge_id))[1:]
        assert [(e["event"], e["outcome"]) for e in entries] == [
            ("challenge.cancel", "cancelled"),
            ("challenge.cancel", "refused"),
        ]


class TestResend:
    async def test_resend_after_the_spacing_is_taken(self, store):
        """At the spacing's end a resend is taken: one more resend, sent now, attempts untouched."""
        challenge = await opened(store, attempts=0)
        at = challenge.next_send_at
        taken = await store.challenges.record_resend(challenge.challenge_id, at, CONTEXT)
        assert taken == dataclasses.replace(challenge, resends=1, last_sent_at=at)
        assert await store.challenges.get_challenge(challenge.challenge_id) == taken

    async def test_resend_too_soon_says_how_long_to_wait(self, store):
        """One millisecond before the spacing's end the resend is refused with a 1 ms wait."""
        challenge = await opened(store)
        with pytest.raises(ResendRefused) as caught:
            await store.challenges.record_resend(
                challenge.challenge_id, challenge.next_send_at - timedelta(milliseconds=1), CONTEXT
            )
        assert caught.value.retry_after == timedelta(milliseconds=1)
        assert await store.challenges.get_challenge(challenge.challenge_id) == challenge

    async def test_no_resend_left_is_refused_without_a_wait(self, store):
        """When every resend was spent the refusal carries no wait."""
        challenge = await opened(store, max_resends=1)
        await store.challenges.record_resend(challenge.challenge_id, challenge.next_send_at, CONTEXT)
        with pytest.raises(ResendRefused) as caught:
            await store.challenges.record_resend(
                challenge.challenge_id, challenge.expires_at - timedelta(seconds=1), CONTEXT
            )
        assert caught.value.retry_after is None

    async def test_resend_keeps_the_attempts_spent(self, store):
        """A resend after a wrong code leaves the attempt counted (NIST: no reset by a new send)."""
        challenge = await opened(store)
        await store.challenges.record_verification(an_attempt(challenge, code_matches=False), LOCKOUT)
        taken = await store.challenges.record_resend(challenge.challenge_id, challenge.next_send_at, CONTEXT)
        assert (taken.attempts, taken.attempts_left) == (1, 2)

    @pytest.mark.parametrize("closing", ["verify", "cancel", "expire"])
    async def test_closed_challenge_is_not_resent(self, store, closing):
        """A verified, cancelled or expired challenge refuses a resend with ChallengeClosed."""
        challenge = await opened(store)
        at = challenge.next_send_at
        if closing == "verify":
            await store.challenges.record_verification(an_attempt(challenge, code_matches=True), LOCKOUT)
        elif closing == "cancel":
            await store.challenges.cancel_challenge(challenge.challenge_id, NOW, CONTEXT)
        else:
            at = challenge.expires_at
        with pytest.raises(ChallengeClosed):
            await store.challenges.record_resend(challenge.challenge_id, at, CONTEXT)

    async def test_unknown_challenge_is_not_found(self, store):
        """A resend of a challenge never opened raises ChallengeNotFound."""
        with pytest.raises(ChallengeNotFound):
            await store.challenges.record_resend(UNKNOWN_ID, NOW, CONTEXT)

    async def test_resends_and_refusals_are_journaled(self, store):
        """Each resend call appends a challenge.resend entry with its outcome, count and context."""
        challenge = await opened(store, max_resends=1)
        with pytest.raises(ResendRefused):
            await store.challenges.record_resend(challenge.challenge_id, NOW, CONTEXT)
        await store.challenges.record_resend(challenge.challenge_id, challenge.next_send_at, CONTEXT)
        with pytest.raises(ResendRefused):
            await store.challenges.record_resend(challenge.challenge_id, challenge.next_send_at, CONTEXT)
        entries = (await store.journal.challenge_journal(challenge.challenge_id))[1:]
        assert [(e["event"], e["outcome"], e["resends"], e["session_id"]) for e in entries] == [
            ("challenge.resend", "too_soon", "0", "sess-1"),
            ("challenge.resend", "resent", "1", "sess-1"),
            ("challenge.resend", "exhausted", "1", "sess-1"),
        ]


class TestDelivery:
    async def test_delivery_state_is_recorded_and_journaled(self, store):
        """record_delivery changes the stored delivery state and journals the provider reference."""
        challenge = await opened(store)
        await store.challenges.record_delivery(challenge.challenge_id, DeliveryState.SENT, "ref-42", NOW)
        assert (await store.challenges.get_challenge(challenge.challenge_id)).delivery is DeliveryState.SENT
        entry = (await store.journal.challenge_journal(challenge.challenge_id))[-1]
        assert (entry["event"], entry["outcome"], entry["provider_ref"]) == (
            "challenge.delivery",
            "sent",
            "ref-42",
        )

    async def test_the_providers_own_message_id_is_journaled_with_the_report(self, store):
        """record_delivery with the provider's message id journals it beside our reference; without one,
        the entry names none."""
        challenge = await opened(store)
        await store.challenges.record_delivery(challenge.challenge_id, DeliveryState.SENT, "ref-42", NOW)
        await store.challenges.record_delivery(
            challenge.challenge_id, DeliveryState.DELIVERED, "ref-42", NOW, provider_id="3e8"
        )
        sent, delivered = (await store.journal.challenge_journal(challenge.challenge_id))[-2:]
        assert "provider_id" not in sent
        assert (delivered["outcome"], delivered["provider_ref"], delivered["provider_id"]) == (
            "delivered",
            "ref-42",
            "3e8",
        )

    async def test_record_delivery_tells_whether_the_report_moved_its_message(self, store):
        """True for a report that moves its message forward; False for a repeat, a late report, and a
        reference past the challenge's 32 messages (the first few journaled or not: the route counts none)."""
        challenge = await opened(store)
        record = store.challenges.record_delivery
        moved = [
            await record(challenge.challenge_id, DeliveryState(state), ref, NOW)
            for state, ref in [("sent", "r1"), ("sent", "r1"), ("delivered", "r1"), ("sent", "r1")]
        ]
        assert moved == [True, False, True, False]
        assert [await record(challenge.challenge_id, DeliveryState.FAILED, "r1", NOW) for _ in range(12)] == [
            False
        ] * 12
        others = [await record(challenge.challenge_id, DeliveryState.FAILED, f"m{n}", NOW) for n in range(40)]
        assert others == [True] * 31 + [False] * 9

    async def test_delivery_for_unknown_challenge_is_not_found(self, store):
        """record_delivery on a challenge never opened raises ChallengeNotFound."""
        with pytest.raises(ChallengeNotFound):
            await store.challenges.record_delivery(UNKNOWN_ID, DeliveryState.FAILED, "", NOW)

    async def test_a_late_accepted_report_does_not_undo_a_delivery(self, store):
        """A report that the SMSC took the message (Kannel 8) after the delivery (1) leaves DELIVERED."""
        challenge = await opened(store)
        await reported(store, challenge, ("sent", "r1"), ("delivered", "r1"), ("sent", "r1"))
        assert (
            await store.challenges.get_challenge(challenge.challenge_id)
        ).delivery is DeliveryState.DELIVERED

    async def test_a_report_before_the_senders_own_record_is_kept(self, store):
        """A delivery report that lands before the flow records SENT for the same message stays DELIVERED."""
        challenge = await opened(store)
        await reported(store, challenge, ("delivered", "r1"), ("sent", "r1"))
        assert (
            await store.challenges.get_challenge(challenge.challenge_id)
        ).delivery is DeliveryState.DELIVERED

    async def test_a_failed_message_stays_failed(self, store):
        """Once a message failed, a later SENT for the same message does not revive it."""
        challenge = await opened(store)
        await reported(store, challenge, ("sent", "r1"), ("failed", "r1"), ("sent", "r1"))
        assert (await store.challenges.get_challenge(challenge.challenge_id)).delivery is DeliveryState.FAILED

    async def test_a_resend_in_flight_outranks_an_earlier_failure(self, store):
        """After a failed message, a resent one in flight makes the challenge SENT, and its failure FAILED."""
        challenge = await opened(store)
        await reported(store, challenge, ("failed", "r1"), ("sent", "r2"))
        assert (await store.challenges.get_challenge(challenge.challenge_id)).delivery is DeliveryState.SENT
        await reported(store, challenge, ("failed", "r2"))
        assert (await store.challenges.get_challenge(challenge.challenge_id)).delivery is DeliveryState.FAILED

    async def test_one_delivered_message_makes_the_challenge_delivered(self, store):
        """Every message carries the same code: one delivery wins over another message's failure."""
        challenge = await opened(store)
        await reported(
            store, challenge, ("sent", "r1"), ("sent", "r2"), ("delivered", "r1"), ("failed", "r2")
        )
        assert (
            await store.challenges.get_challenge(challenge.challenge_id)
        ).delivery is DeliveryState.DELIVERED

    @pytest.mark.parametrize(
        "order",
        [
            [("sent", "smpp-1"), ("delivered", "smpp-1"), ("failed", "kannel-1")],
            [("failed", "kannel-1"), ("sent", "smpp-1"), ("delivered", "smpp-1")],
        ],
        ids=["failure-last", "failure-first"],
    )
    async def test_a_failure_report_after_a_failover_does_not_hide_the_other_providers_success(
        self, store, order
    ):
        """Kannel timed out (its message failed over to SMPP, which delivered it), then Kannel reports the
        message it did take as rejected: the challenge stays DELIVERED, whatever the order."""
        challenge = await opened(store)
        await reported(store, challenge, *order)
        assert (
            await store.challenges.get_challenge(challenge.challenge_id)
        ).delivery is DeliveryState.DELIVERED

    async def test_an_expired_message_is_final_and_outranks_a_failed_one(self, store):
        """EXPIRED (the SMSC gave up at the end of the validity) is final; over a failed message it shows."""
        challenge = await opened(store)
        await reported(store, challenge, ("sent", "r1"), ("expired", "r1"), ("sent", "r1"), ("failed", "r2"))
        assert (
            await store.challenges.get_challenge(challenge.challenge_id)
        ).delivery is DeliveryState.EXPIRED

    async def test_reports_that_move_nothing_are_journaled_a_few_times_only(self, store):
        """A delivered message reported again and again: the first 8 such reports are journaled, no more."""
        challenge = await opened(store)
        await reported(store, challenge, ("delivered", "r1"), *[("sent", "r1")] * 20)
        entries = (await store.journal.challenge_journal(challenge.challenge_id))[1:]
        assert len(entries) == 1 + 8

    async def test_a_reference_beyond_the_challenges_32_messages_is_dropped(self, store):
        """A 33rd message reference is none of the challenge's messages: nothing is noted or journaled."""
        challenge = await opened(store)
        await reported(store, challenge, *[("sent", f"r{n}") for n in range(32)], ("delivered", "r-forged"))
        assert len((await store.journal.challenge_journal(challenge.challenge_id))[1:]) == 32
        assert (await store.challenges.get_challenge(challenge.challenge_id)).delivery is DeliveryState.SENT

    async def test_every_report_is_journaled_with_the_resulting_state(self, store):
        """Ignored reports are journaled too, each with what was reported and the state that resulted."""
        challenge = await opened(store)
        await reported(store, challenge, ("sent", "r1"), ("delivered", "r1"), ("sent", "r1"))
        entries = (await store.journal.challenge_journal(challenge.challenge_id))[1:]
        assert [(e["outcome"], e["provider_ref"], e["delivery"]) for e in entries] == [
            ("sent", "r1", "sent"),
            ("delivered", "r1", "delivered"),
            ("sent", "r1", "delivered"),
        ]

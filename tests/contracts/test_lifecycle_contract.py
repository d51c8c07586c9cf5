"""The State contract for the user lifecycle: the fake and Redis answer and journal alike."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_store import RedisState
from sesame.server.domain.dispatching import NoticeAddressee, NoticeFailure, QueuedSms
from sesame.server.domain.errors import (
    ChallengeAlreadyExists,
    ChallengeConsumed,
    ChallengeMismatch,
    ChallengeNotFound,
    ChallengeNotVerified,
    RequestIdReused,
    SecurePhoneChanged,
    SendBudgetExhausted,
    UserNotActive,
    UserNotFound,
)
from sesame.server.domain.lifecycle import (
    AppliedChange,
    ByChallenge,
    ByOverride,
    Consumption,
    PhoneChange,
    PhoneChangeOutcome,
    Provenance,
    StatusAction,
    StatusChange,
    UserNotice,
    Voiding,
    VoidOutcome,
    VoidReason,
)
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    LockoutPolicy,
    RequestContext,
    UserStatus,
    VerificationAttempt,
    VerifyResult,
)
from sesame.server.domain.operation import ChangePhone, digest
from sesame.server.domain.ports import Outbox
from sesame.server.domain.risk_signals import IN_FLIGHT_READ
from tests import factories
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState

NOW = datetime.now(UTC).replace(microsecond=0)
PHONE, NEW_PHONE = "+33612345678", "+33698765432"
CONTEXT = RequestContext(ip="203.0.113.7", session_id="sess-1")
BY = Provenance(actor="ops-42", reason="vol du téléphone", request_id="r-1", caller="backoffice")
NEW_NUMBER = ChangePhone(NEW_PHONE)


def by(request_id: str, **changes: str) -> Provenance:
    return dataclasses.replace(BY, request_id=request_id, **changes)


def change(action: StatusAction, request_id: str = "r-1", at: datetime = NOW) -> StatusChange:
    return StatusChange("u-1", action, at, by(request_id))


async def enrolled(store: Store) -> None:
    await store.users.register_user(factories.a_user(NOW - timedelta(days=30)))


LOCKOUT = LockoutPolicy()


async def opened(store: Store, **changes: object) -> Challenge:
    challenge = await factories.its_user_enrolled(store, factories.a_challenge(NOW, **changes))
    await store.challenges.open_challenge(challenge, CONTEXT)
    return challenge


async def verified(store: Store, operation: ChangePhone = NEW_NUMBER, **changes: object) -> Challenge:
    challenge = await opened(store, operation=operation, **changes)
    attempt = VerificationAttempt(challenge.challenge_id, digest(operation), True, NOW, CONTEXT)
    await store.challenges.record_verification(attempt, LOCKOUT)
    return challenge


def consumption(challenge: Challenge, request_id: str = "r-1", **changes: object) -> Consumption:
    spend = Consumption(
        challenge.challenge_id, "u-1", digest(NEW_NUMBER), request_id, NOW + timedelta(minutes=1), CONTEXT
    )
    return dataclasses.replace(spend, **changes)


def phone_change(request_id: str = "r-1", **changes: object) -> PhoneChange:
    base = PhoneChange(
        user_id="u-1",
        new_phone=NEW_PHONE,
        at=NOW,
        cooling_until=NOW + timedelta(hours=72),
        authority=ByOverride("agent-7"),
        provenance=by(request_id),
        context=CONTEXT,
    )
    return dataclasses.replace(base, **changes)


async def events(store: Store) -> list[tuple[str, str]]:
    return [(e["event"], e.get("outcome", "")) for e in await store.users.user_journal("u-1")]


class TestStatusChanges:
    async def test_suspension_is_journaled_with_who_and_why(self, store):
        """A suspension makes the user SUSPENDED at once and journals who asked, why, and the request."""
        await enrolled(store)
        user = (await store.users.change_user_status(change(StatusAction.SUSPEND))).user
        assert (user.status, user.status_changed_at) == (UserStatus.SUSPENDED, NOW)
        entry = (await store.users.user_journal("u-1"))[-1]
        assert (entry["event"], entry["outcome"], entry["status"]) == (
            "user.suspend",
            "suspended",
            "suspended",
        )
        assert (entry["actor"], entry["reason"], entry["request_id"], entry["caller"]) == (
            "ops-42",
            "vol du téléphone",
            "r-1",
            "backoffice",
        )

    async def test_suspending_a_suspended_user_changes_nothing_but_is_journaled(self, store):
        """A second notice of loss finds the user suspended already: no change, one more entry."""
        await enrolled(store)
        first = await store.users.change_user_status(change(StatusAction.SUSPEND))
        again = await store.users.change_user_status(
            change(StatusAction.SUSPEND, "r-2", NOW + timedelta(hours=1))
        )
        assert (first.changed, again.changed) == (True, False)  # what the metrics count: the first only
        assert dataclasses.replace(again, changed=True) == first
        assert (await events(store))[-1] == ("user.suspend", "unchanged")

    async def test_reinstatement_makes_a_suspended_user_active(self, store):
        """Reinstating a suspended user makes it ACTIVE again."""
        await enrolled(store)
        await store.users.change_user_status(change(StatusAction.SUSPEND))
        user = (await store.users.change_user_status(change(StatusAction.REINSTATE, "r-2"))).user
        assert user.status is UserStatus.ACTIVE
        assert (await events(store))[-1] == ("user.reinstate", "reinstated")

    async def test_reinstatement_lifts_a_block_after_wrong_codes(self, store):
        """Reinstating an active, blocked user clears its wrong codes, blocks and block."""
        await enrolled(store)
        challenge = await opened(store)
        for _ in range(2):
            wrong = VerificationAttempt(challenge.challenge_id, challenge.op_digest, False, NOW, CONTEXT)
            await store.challenges.record_verification(wrong, LockoutPolicy(max_failures=2))
        user = (await store.users.change_user_status(change(StatusAction.REINSTATE))).user
        assert (user.failures, user.blocks, user.blocked_until) == (0, 0, None)
        assert (await events(store))[-1] == ("user.reinstate", "unblocked")

    @pytest.mark.parametrize("action", [StatusAction.SUSPEND, StatusAction.REINSTATE])
    async def test_a_revoked_user_moves_no_more(self, store, action):
        """Suspending or reinstating a revoked user is refused (journaled), and it stays REVOKED."""
        await enrolled(store)
        await store.users.change_user_status(change(StatusAction.REVOKE))
        with pytest.raises(UserNotActive):
            await store.users.change_user_status(change(action, "r-2"))
        assert (await store.users.get_user("u-1")).status is UserStatus.REVOKED
        assert (await events(store))[-1] == (f"user.{action.value}", "refused")

    async def test_revoking_twice_changes_nothing(self, store):
        """A second revocation answers the revoked user and keeps the first revocation's time."""
        await enrolled(store)
        first = await store.users.change_user_status(change(StatusAction.REVOKE))
        again = await store.users.change_user_status(
            change(StatusAction.REVOKE, "r-2", NOW + timedelta(days=1))
        )
        assert (first.changed, again.changed) == (True, False)
        assert dataclasses.replace(again, changed=True) == first

    async def test_a_request_applied_before_is_not_applied_again(self, store):
        """A reinstatement retried after a later suspension answers without undoing the suspension."""
        await enrolled(store)
        await store.users.change_user_status(change(StatusAction.SUSPEND, "r-1"))
        await store.users.change_user_status(change(StatusAction.REINSTATE, "r-2"))
        await store.users.change_user_status(change(StatusAction.SUSPEND, "r-3"))
        journaled = len(await store.users.user_journal("u-1"))
        retried = await store.users.change_user_status(change(StatusAction.REINSTATE, "r-2"))
        assert retried.user.status is UserStatus.SUSPENDED
        assert len(await store.users.user_journal("u-1")) == journaled

    async def test_a_request_id_reused_for_another_change_is_refused(self, store):
        """The same request id for another action is RequestIdReused, and nothing is written."""
        await enrolled(store)
        await store.users.change_user_status(change(StatusAction.SUSPEND))
        before = await store.users.user_journal("u-1")
        with pytest.raises(RequestIdReused):
            await store.users.change_user_status(change(StatusAction.REVOKE))
        assert await store.users.user_journal("u-1") == before

    async def test_unknown_user_is_not_found(self, store):
        """A status change for a user never enrolled raises UserNotFound."""
        with pytest.raises(UserNotFound):
            await store.users.change_user_status(change(StatusAction.SUSPEND))

    async def test_a_revoked_id_is_never_enrolled_again(self, store):
        """Even the same client and number cannot enrol a revoked id again."""
        await enrolled(store)
        await store.users.change_user_status(change(StatusAction.REVOKE))
        with pytest.raises(UserNotActive):
            await store.users.register_user(factories.a_user(NOW))


def nonce(n: int) -> bytes:
    return n.to_bytes(16, "big")


class TestOpenAtChange:
    """The user's challenges open at a suspension, a revocation or a change of number, counted in its step:
    each is void from then on, whichever step marks it so first (decision 0102)."""

    async def test_a_suspension_counts_what_was_open_then_and_nothing_expired(self, store):
        await opened(store, nonce=nonce(1))
        await opened(store, nonce=nonce(2), expires_at=NOW + timedelta(minutes=9))
        old = NOW - timedelta(minutes=6)
        await opened(store, nonce=nonce(3), created_at=old, expires_at=old + timedelta(minutes=5))  # expired
        suspended = await store.users.change_user_status(change(StatusAction.SUSPEND))
        assert suspended.open_at_change == 2
        replayed = await store.users.change_user_status(change(StatusAction.SUSPEND))
        assert replayed.open_at_change == 0  # a retry's are what its own voiding reaches
        again = await store.users.change_user_status(change(StatusAction.SUSPEND, "r-2"))
        assert again.open_at_change == 0  # nothing changed
        reinstated = await store.users.change_user_status(change(StatusAction.REINSTATE, "r-3"))
        assert reinstated.open_at_change == 0
        revoked = await store.users.change_user_status(change(StatusAction.REVOKE, "r-4"))
        assert revoked.open_at_change == 2  # never voided here: the index still names them

    async def test_a_closed_challenge_is_not_counted(self, store):
        await verified(store, nonce=nonce(1))
        await opened(store, nonce=nonce(2))
        assert (await store.users.change_user_status(change(StatusAction.REVOKE))).open_at_change == 1

    async def test_a_change_of_number_counts_what_was_open_on_the_old_one(self, store):
        await opened(store, nonce=nonce(1))
        await opened(store, nonce=nonce(2))
        changed = await store.users.change_secure_phone(phone_change())
        assert (changed.outcome, changed.open_at_change) == (PhoneChangeOutcome.CHANGED, 2)
        replayed = await store.users.change_secure_phone(phone_change())
        assert (replayed.outcome, replayed.open_at_change) == (PhoneChangeOutcome.REPLAYED, 0)


class TestPendingIndex:
    async def test_opened_challenges_are_pending_until_they_expire(self, store):
        """Opened ids come back, soonest expiry first, while their expiry is after the cutoff."""
        late = await opened(store, nonce=nonce(1), expires_at=NOW + timedelta(minutes=9))
        soon = await opened(store, nonce=nonce(2), expires_at=NOW + timedelta(minutes=5))
        assert await store.challenges.pending_challenges("u-1", NOW) == [soon.challenge_id, late.challenge_id]
        assert await store.challenges.pending_challenges("u-1", NOW + timedelta(minutes=5)) == [
            late.challenge_id
        ]

    async def test_entries_expired_before_the_cutoff_are_forgotten(self, store):
        """Opening drops the entries that expired before its creation, less the clock skew."""
        old = NOW - timedelta(days=1)
        await opened(store, nonce=nonce(1), created_at=old, expires_at=old + timedelta(minutes=5))
        new = await opened(store, nonce=nonce(2))
        assert await store.challenges.pending_challenges("u-1", old) == [new.challenge_id]

    async def test_a_challenge_closed_leaves_the_index(self, store):
        """Verified, locked, voided by a wrong operation, cancelled: each leaves in the step that closes it
        (decision 0093); a wrong code that leaves attempts, and a refusal, leave it indexed."""
        ids = [(await opened(store, nonce=nonce(n), max_attempts=2)).challenge_id for n in range(1, 6)]
        right, locked, mismatch, cancelled, still = ids
        login = factories.a_challenge(NOW).op_digest

        async def attempt(challenge_id: str, *, matches: bool, op_digest: bytes = login) -> VerifyResult:
            tried = VerificationAttempt(challenge_id, op_digest, matches, NOW, CONTEXT)
            return (await store.challenges.record_verification(tried, LOCKOUT)).result

        assert await attempt(right, matches=True) is VerifyResult.VERIFIED
        assert await attempt(right, matches=True) is VerifyResult.ALREADY_USED
        assert [await attempt(locked, matches=False), await attempt(locked, matches=False)] == [
            VerifyResult.WRONG_CODE
        ] * 2
        assert (await store.challenges.get_challenge(locked)).status is ChallengeStatus.LOCKED
        assert await attempt(mismatch, matches=True, op_digest=bytes(32)) is VerifyResult.OPERATION_MISMATCH
        await store.challenges.cancel_challenge(cancelled, NOW, CONTEXT)
        assert await attempt(still, matches=False) is VerifyResult.WRONG_CODE
        assert await store.challenges.pending_challenges("u-1", NOW) == [still]

    async def test_a_user_has_at_most_the_in_flight_read_open(self, store):
        """IN_FLIGHT_READ challenges open: the next is refused as the user's spent budget until the first
        of them expires, writing nothing; one of them closed, it opens (decision 0095: the risk step's
        in-flight read then sees every open challenge)."""
        later = [timedelta(minutes=5, seconds=n) for n in range(1, IN_FLIGHT_READ + 1)]
        ids = [
            (await opened(store, nonce=nonce(n), expires_at=NOW + t)).challenge_id
            for n, t in enumerate(later, 1)
        ]
        refused = factories.a_challenge(NOW, nonce=nonce(IN_FLIGHT_READ + 1))
        with pytest.raises(SendBudgetExhausted) as spent:
            await store.challenges.open_challenge(refused, CONTEXT)
        assert (spent.value.subject, spent.value.retry_after) == ("user", timedelta(minutes=5, seconds=1))
        assert await store.journal.challenge_journal(refused.challenge_id) == []
        assert await store.challenges.pending_challenges("u-1", NOW) == ids
        await store.challenges.cancel_challenge(ids[0], NOW, CONTEXT)
        await store.challenges.open_challenge(refused, CONTEXT)
        assert refused.challenge_id in await store.challenges.pending_challenges("u-1", NOW)

    async def test_a_voided_challenge_leaves_the_index(self, store):
        """Voided after a change of the user, it leaves the index (decision 0093)."""
        challenge = await opened(store, nonce=nonce(1))
        voiding = Voiding("u-1", VoidReason.USER_SUSPENDED, NOW, BY)
        assert await store.challenges.void_challenge(challenge.challenge_id, voiding) is VoidOutcome.VOIDED
        assert await store.challenges.pending_challenges("u-1", NOW) == []

    async def test_a_suspended_user_gets_no_challenge(self, store):
        """Opening for a suspended user raises UserNotActive and writes nothing."""
        await enrolled(store)
        await store.users.change_user_status(change(StatusAction.SUSPEND))
        challenge = factories.a_challenge(NOW)
        with pytest.raises(UserNotActive):
            await store.challenges.open_challenge(challenge, CONTEXT)
        assert await store.challenges.pending_challenges("u-1", NOW) == []
        assert await store.journal.challenge_journal(challenge.challenge_id) == []

    async def test_a_code_for_a_number_no_longer_secure_is_not_opened(self, store):
        """Opening for a number that is not the secure one raises SecurePhoneChanged and writes nothing."""
        await enrolled(store)
        challenge = factories.a_challenge(NOW, phone="+33698765432")
        with pytest.raises(SecurePhoneChanged):
            await store.challenges.open_challenge(challenge, CONTEXT)
        assert await store.challenges.pending_challenges("u-1", NOW) == []
        assert await store.journal.challenge_journal(challenge.challenge_id) == []

    async def test_opening_for_an_unknown_user_is_not_found(self, store):
        """Opening for a user never enrolled raises UserNotFound."""
        with pytest.raises(UserNotFound):
            await store.challenges.open_challenge(factories.a_challenge(NOW, user_id="nobody"), CONTEXT)


class TestVoiding:
    VOIDING = Voiding("u-1", VoidReason.USER_SUSPENDED, NOW + timedelta(seconds=10), BY)

    async def test_an_open_challenge_is_voided_and_refuses_its_right_code(self, store):
        """A voided challenge reads VOIDED and its right code answers VOIDED."""
        challenge = await opened(store)
        assert (
            await store.challenges.void_challenge(challenge.challenge_id, self.VOIDING) is VoidOutcome.VOIDED
        )
        assert (await store.challenges.get_challenge(challenge.challenge_id)).status is ChallengeStatus.VOIDED
        attempt = VerificationAttempt(challenge.challenge_id, challenge.op_digest, True, NOW, CONTEXT)
        assert (await store.challenges.record_verification(attempt, LOCKOUT)).result is VerifyResult.VOIDED

    async def test_a_closed_challenge_is_left_as_it_is(self, store):
        """Voiding a verified challenge answers CLOSED and it stays VERIFIED, unjournaled."""
        challenge = await verified(store)
        assert (
            await store.challenges.void_challenge(challenge.challenge_id, self.VOIDING) is VoidOutcome.CLOSED
        )
        assert (
            await store.challenges.get_challenge(challenge.challenge_id)
        ).status is ChallengeStatus.VERIFIED
        journal = await store.journal.challenge_journal(challenge.challenge_id)
        assert journal[-1]["event"] == "challenge.verification"

    async def test_an_id_never_opened_is_spent_for_good(self, store):
        """Voiding an id not opened yet answers FORECLOSED, and opening it afterwards is refused."""
        challenge = await factories.its_user_enrolled(store, factories.a_challenge(NOW))
        assert (
            await store.challenges.void_challenge(challenge.challenge_id, self.VOIDING)
            is VoidOutcome.FORECLOSED
        )
        with pytest.raises(ChallengeAlreadyExists):
            await store.challenges.open_challenge(challenge, CONTEXT)

    async def test_a_purged_challenge_is_gone(self, store):
        """A challenge past its retention answers GONE and gains no journal entry."""
        old = NOW - timedelta(days=2)
        challenge = await opened(store, created_at=old, expires_at=old + timedelta(minutes=5))
        assert await store.challenges.void_challenge(challenge.challenge_id, self.VOIDING) is VoidOutcome.GONE
        assert len(await store.journal.challenge_journal(challenge.challenge_id)) == 1

    async def test_voiding_is_journaled_with_the_reason_and_who_asked(self, store):
        """The challenge.void entry names the reason, the actor and the request id."""
        challenge = await opened(store)
        await store.challenges.void_challenge(challenge.challenge_id, self.VOIDING)
        entry = (await store.journal.challenge_journal(challenge.challenge_id))[-1]
        assert (entry["event"], entry["outcome"], entry["status"]) == (
            "challenge.void",
            "voided",
            "voided",
        )
        assert (entry["void_reason"], entry["actor"], entry["request_id"]) == (
            "user_suspended",
            "ops-42",
            "r-1",
        )


class TestConsumption:
    async def test_a_verified_challenge_is_spent_once(self, store):
        """The first consumption returns the challenge; another request then gets ChallengeConsumed."""
        challenge = await verified(store)
        assert (
            await store.challenges.consume_challenge(consumption(challenge))
        ).challenge_id == challenge.challenge_id
        with pytest.raises(ChallengeConsumed):
            await store.challenges.consume_challenge(consumption(challenge, "r-2"))

    async def test_the_same_request_may_spend_it_again(self, store):
        """A retry of the same change (same request id) gets the challenge back."""
        challenge = await verified(store)
        await store.challenges.consume_challenge(consumption(challenge))
        assert (
            await store.challenges.consume_challenge(consumption(challenge))
        ).challenge_id == challenge.challenge_id

    async def test_an_open_challenge_is_not_verified(self, store):
        """A challenge still waiting for its code raises ChallengeNotVerified."""
        challenge = await opened(store, operation=NEW_NUMBER)
        with pytest.raises(ChallengeNotVerified):
            await store.challenges.consume_challenge(consumption(challenge))

    @pytest.mark.parametrize(
        "other",
        [{"user_id": "u-2"}, {"op_digest": digest(ChangePhone("+33611111111"))}],
        ids=["user", "number"],
    )
    async def test_another_users_or_numbers_challenge_is_a_mismatch(self, store, other):
        """Another user, or a code for another new number, raises ChallengeMismatch."""
        challenge = await verified(store)
        with pytest.raises(ChallengeMismatch):
            await store.challenges.consume_challenge(consumption(challenge, **other))

    async def test_past_its_retention_it_reads_as_purged(self, store):
        """A day after expiry (the default retention) the challenge is ChallengeNotFound."""
        challenge = await verified(store)
        late = challenge.expires_at + timedelta(hours=24)
        with pytest.raises(ChallengeNotFound):
            await store.challenges.consume_challenge(consumption(challenge, at=late))

    async def test_every_consumption_is_journaled(self, store):
        """Spent, replayed and refused consumptions each leave a challenge.consume entry."""
        challenge = await verified(store)
        await store.challenges.consume_challenge(consumption(challenge))
        await store.challenges.consume_challenge(consumption(challenge))
        with pytest.raises(ChallengeConsumed):
            await store.challenges.consume_challenge(consumption(challenge, "r-2"))
        entries = (await store.journal.challenge_journal(challenge.challenge_id))[2:]
        assert [(e["event"], e["outcome"], e["request_id"]) for e in entries] == [
            ("challenge.consume", "consumed", "r-1"),
            ("challenge.consume", "replayed", "r-1"),
            ("challenge.consume", "used", "r-2"),
        ]

    async def test_repeated_refused_consumptions_are_journaled_once_and_counted(self, store):
        """Three more request ids on a spent challenge: one `used` entry, a count of three."""
        challenge = await verified(store)
        await store.challenges.consume_challenge(consumption(challenge))
        for request_id in ("r-2", "r-3", "r-4"):
            with pytest.raises(ChallengeConsumed):
                await store.challenges.consume_challenge(consumption(challenge, request_id))
        outcomes = [e["outcome"] for e in await store.journal.challenge_journal(challenge.challenge_id)]
        assert outcomes.count("used") == 1
        counts = await store.journal.challenge_refusals(challenge.challenge_id)
        assert [(c.event, c.outcome, c.count) for c in counts] == [("challenge.consume", "used", 3)]


async def queued_notices(store: Store) -> list[tuple[str, str]]:
    """(challenge id, kind) of the notices waiting in the outbox (the codes' entries left out)."""
    outbox = store.outbox if isinstance(store, MemoryState) else store.outbox()
    try:
        taken = await outbox.take("contract", 100, timedelta(milliseconds=1))
    finally:
        if not isinstance(store, MemoryState):
            await outbox.close()
    return [(queued.challenge_id, queued.notice) for queued in taken if queued.notice]


@contextlib.asynccontextmanager
async def taken_notices(store: Store) -> AsyncIterator[tuple[Outbox, list[QueuedSms]]]:
    """The outbox and the notices it gives a dispatcher now (the codes' entries left out)."""
    outbox: Outbox = store.outbox if isinstance(store, MemoryState) else store.outbox()
    try:
        taken = await outbox.take("contract", 100, timedelta(milliseconds=1))
        yield outbox, [queued for queued in taken if queued.notice]
    finally:
        if isinstance(outbox, RedisOutbox):
            await outbox.close()


class TestPhoneChange:
    async def test_a_change_by_challenge_queues_the_notice_in_its_step(self, store):
        """Authorised by a verified challenge, the change queues one `phone_changed` notice naming that
        challenge (its code went to the old number); a retry of the change queues none (decision 0041)."""
        await enrolled(store)
        challenge = await verified(store)
        by_challenge = phone_change(authority=ByChallenge(challenge.challenge_id))
        await store.users.change_secure_phone(by_challenge)
        await store.users.change_secure_phone(by_challenge)
        assert await queued_notices(store) == [(challenge.challenge_id, "phone_changed")]

    async def test_an_override_queues_its_notice_with_the_old_number_kept_beside(self, store):
        """An override names no challenge: its step queues one `phone_changed` notice naming its user, and
        keeps the old number (with the new one and the locale the text needs) for the dispatcher, not in the
        entry; a retry of the change queues none (decision 0041)."""
        await enrolled(store)
        await store.users.change_secure_phone(phone_change())
        await store.users.change_secure_phone(phone_change())
        async with taken_notices(store) as (outbox, taken):
            assert [(q.challenge_id, q.user_id, q.notice) for q in taken] == [("", "u-1", "phone_changed")]
            assert await outbox.addressee(taken[0]) == NoticeAddressee(PHONE, NEW_PHONE, "fr")

    @pytest.mark.parametrize("dead_lettered", [False, True], ids=["sent", "dead_lettered"])
    async def test_an_override_notices_old_number_goes_with_its_settling(self, store, dead_lettered):
        """Sent (record_notice.lua) or dead-lettered (record_failed_notice.lua): the same step deletes the
        old number kept for the notice, and journals the notice with it masked."""
        await enrolled(store)
        await store.users.change_secure_phone(phone_change())
        async with taken_notices(store) as (outbox, taken):
            (queued,) = taken
            notice = UserNotice("phone_changed", PHONE, not dead_lettered, "", NOW, None)
            if dead_lettered:
                why = NoticeFailure("bad_number", NOW, 0, NOW + timedelta(days=1))
                assert (await outbox.fail_notice(queued, "u-1", notice, why)).dead_letter == "bad_number"
            else:
                await outbox.settle_notice(queued, "u-1", notice)
            assert await outbox.addressee(queued) is None
        entry = (await store.users.user_journal("u-1"))[-1]
        assert (entry["event"], entry["kind"], entry["phone"]) == (
            "user.notice",
            "phone_changed",
            "+33*******78",
        )

    async def test_the_number_changes_and_the_cooling_starts(self, store):
        """The new number, its change time and the cooling end are stored; the old number is answered."""
        await enrolled(store)
        changed = await store.users.change_secure_phone(phone_change())
        assert (changed.outcome, changed.previous_phone) == (PhoneChangeOutcome.CHANGED, PHONE)
        user = await store.users.get_user("u-1")
        assert (user.secure_phone, user.phone_changed_at, user.cooling_until) == (
            NEW_PHONE,
            NOW,
            NOW + timedelta(hours=72),
        )

    async def test_the_change_is_journaled_with_both_numbers_masked(self, store):
        """user.change_phone names the method, the operator and both numbers, masked only."""
        await enrolled(store)
        await store.users.change_secure_phone(phone_change())
        entry = (await store.users.user_journal("u-1"))[-1]
        assert (entry["event"], entry["outcome"], entry["method"], entry["operator"]) == (
            "user.change_phone",
            "changed",
            "override",
            "agent-7",
        )
        assert (entry["old_phone"], entry["phone"]) == ("+33*******78", "+33*******32")
        assert not any(PHONE[1:] in v or NEW_PHONE[1:] in v for v in entry.values())

    async def test_a_retried_change_is_replayed(self, store):
        """The same request again changes nothing more and journals nothing more."""
        await enrolled(store)
        await store.users.change_secure_phone(phone_change())
        journaled = len(await store.users.user_journal("u-1"))
        again = await store.users.change_secure_phone(phone_change())
        assert (again.outcome, again.user.secure_phone) == (PhoneChangeOutcome.REPLAYED, NEW_PHONE)
        assert again.counts == (0, 1)  # the change's, for its voiding
        assert len(await store.users.user_journal("u-1")) == journaled

    async def test_the_applied_request_id_is_remembered(self, store):
        """After a change its request id names the change's fingerprint and the counts it left; an unused one
        names nothing."""
        await enrolled(store)
        await store.users.change_secure_phone(phone_change())
        assert await store.users.applied_change("u-1", "r-1") == AppliedChange(
            phone_change().fingerprint, (0, 1)
        )
        assert await store.users.applied_change("u-1", "r-2") is None

    async def test_a_request_id_reused_for_another_number_is_refused(self, store):
        """The same request id with another new number is RequestIdReused."""
        await enrolled(store)
        await store.users.change_secure_phone(phone_change())
        with pytest.raises(RequestIdReused):
            await store.users.change_secure_phone(phone_change(new_phone="+33611111111"))

    async def test_a_challenge_does_not_change_a_suspended_users_number(self, store):
        """By challenge the user must be ACTIVE (refused and journaled); by override a suspended one may."""
        await enrolled(store)
        await store.users.change_user_status(change(StatusAction.SUSPEND, "s-1"))
        with pytest.raises(UserNotActive):
            await store.users.change_secure_phone(phone_change(authority=ByChallenge("c")))
        assert (await events(store))[-1] == ("user.change_phone", "refused")
        assert (
            await store.users.change_secure_phone(phone_change("r-2"))
        ).outcome is PhoneChangeOutcome.CHANGED

    async def test_a_number_moved_meanwhile_is_a_mismatch(self, store):
        """When the secure number is no longer the one the code went to, the change is refused."""
        await enrolled(store)
        with pytest.raises(ChallengeMismatch):
            await store.users.change_secure_phone(phone_change(expected_phone="+33611111111"))
        assert (await store.users.get_user("u-1")).secure_phone == PHONE

    async def test_a_status_change_since_the_challenge_is_a_mismatch(self, store):
        """A challenge opened before the user's last suspension or reinstatement authorises nothing."""
        await enrolled(store)
        await store.users.change_user_status(change(StatusAction.SUSPEND, "s-1", NOW))
        await store.users.change_user_status(change(StatusAction.REINSTATE, "s-2", NOW))
        with pytest.raises(ChallengeMismatch):
            await store.users.change_secure_phone(phone_change(unchanged_since=NOW - timedelta(minutes=1)))

    async def test_since_the_challenge_is_the_order_of_the_steps_not_their_clocks(self, store):
        """Under a challenge's counts (decision 0056): a suspension and reinstatement stamped a minute before
        the challenge opened (a host whose clock is behind) but counted after it is a mismatch; a change
        stamped a minute after it but counted before it (a clock ahead) is not."""
        await enrolled(store)
        ahead = NOW + timedelta(minutes=1)
        await store.users.change_user_status(change(StatusAction.SUSPEND, "s-1", ahead))
        await store.users.change_user_status(change(StatusAction.REINSTATE, "s-2", ahead))
        assert (await store.users.get_user("u-1")).changes == (2, 0)
        opened_under = (2, 0)  # the challenge opened after those two steps, whatever their stamps
        behind = NOW - timedelta(minutes=1)
        await store.users.change_user_status(change(StatusAction.SUSPEND, "s-3", behind))
        await store.users.change_user_status(change(StatusAction.REINSTATE, "s-4", behind))
        with pytest.raises(ChallengeMismatch):
            await store.users.change_secure_phone(phone_change("r-1", unchanged_counts=opened_under))
        assert (await store.users.get_user("u-1")).secure_phone == PHONE
        changed = await store.users.change_secure_phone(phone_change("r-2", unchanged_counts=(4, 0)))
        assert (changed.outcome, changed.user.changes) == (PhoneChangeOutcome.CHANGED, (4, 1))

    async def test_a_notice_is_journaled_with_the_number_masked(self, store):
        """user.notice records the kind, the masked number and whether the gateway took it."""
        await enrolled(store)
        await store.users.record_user_notice("u-1", UserNotice("phone_changed", PHONE, True, "ref-1", NOW))
        entry = (await store.users.user_journal("u-1"))[-1]
        assert (entry["event"], entry["kind"], entry["phone"], entry["outcome"], entry["provider_ref"]) == (
            "user.notice",
            "phone_changed",
            "+33*******78",
            "sent",
            "ref-1",
        )

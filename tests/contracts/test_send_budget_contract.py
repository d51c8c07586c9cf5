"""The send-budget half of the State contract: opening a challenge or taking a resend takes one unit of
each charge in the same atomic step, and the fake and Redis take and refuse alike (docs/decisions/0014)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_store import RedisState
from sesame.server.domain.budgets import BudgetSubject, Charge
from sesame.server.domain.errors import ChallengeAlreadyExists, ChallengeNotFound, SendBudgetExhausted
from sesame.server.domain.model import Challenge, RequestContext
from tests import factories
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState

USER = BudgetSubject.user("alice")
NUMBER = BudgetSubject.phone("+33612345678")
WINDOW = timedelta(hours=1)
CONTEXT = RequestContext()
_nonces = itertools.count(1)


def now() -> datetime:
    """The real present to the millisecond: Redis expires a budget's key by its own wall clock."""
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def a_new_challenge(at: datetime) -> Challenge:
    """A challenge never opened before, created at `at`."""
    return factories.a_challenge(at, nonce=next(_nonces).to_bytes(16, "big"))


async def take(store: Store, at: datetime, *charges: Charge) -> Challenge:
    """Open a new challenge at `at` with these charges."""
    challenge = await factories.its_user_enrolled(store, a_new_challenge(at))
    await store.challenges.open_challenge(challenge, CONTEXT, charges)
    return challenge


async def refusal(store: Store, at: datetime, *charges: Charge) -> SendBudgetExhausted:
    """The refusal of one more opening at `at`; the challenge it would have opened does not exist."""
    challenge = await factories.its_user_enrolled(store, a_new_challenge(at))
    with pytest.raises(SendBudgetExhausted) as refused:
        await store.challenges.open_challenge(challenge, CONTEXT, charges)
    with pytest.raises(ChallengeNotFound):
        await store.challenges.get_challenge(challenge.challenge_id)
    return refused.value


def user(limit: int) -> Charge:
    return Charge(USER, limit, WINDOW)


def number(limit: int) -> Charge:
    return Charge(NUMBER, limit, WINDOW)


async def test_takes_pass_up_to_the_limit(store: Store) -> None:
    """Three openings fit a limit of three; the fourth is refused on the subject's kind."""
    at = now()
    for i in range(3):
        await take(store, at + timedelta(seconds=i), user(3))
    assert (await refusal(store, at + timedelta(seconds=3), user(3))).subject == "user"


async def test_takes_at_the_same_millisecond_all_count(store: Store) -> None:
    """Two openings at one instant are two units, not one."""
    at = now()
    await take(store, at, number(2))
    await take(store, at, number(2))
    assert (await refusal(store, at, number(2))).subject == "phone"


async def test_the_wait_is_exact_to_the_millisecond(store: Store) -> None:
    """Refused 1.234 s after the only unit was taken, the wait is the window less 1.234 s."""
    at = now()
    await take(store, at, user(1))
    later = at + timedelta(milliseconds=1234)
    assert (await refusal(store, later, user(1))).retry_after == WINDOW - timedelta(milliseconds=1234)


async def test_the_window_slides(store: Store) -> None:
    """One millisecond before the window's end the unit still counts; at its end it has freed."""
    at = now()
    await take(store, at, user(1))
    almost = at + WINDOW - timedelta(milliseconds=1)
    assert (await refusal(store, almost, user(1))).retry_after == timedelta(milliseconds=1)
    await take(store, at + WINDOW, user(1))


async def test_a_refusal_writes_nothing(store: Store) -> None:
    """A refused opening leaves no unit: when the first unit frees, exactly one more opening fits."""
    at = now()
    await take(store, at, user(2))
    await take(store, at + timedelta(seconds=10), user(2))
    await refusal(store, at + timedelta(seconds=20), user(2))
    await take(store, at + WINDOW, user(2))
    assert (await refusal(store, at + WINDOW, user(2))).retry_after == timedelta(seconds=10)


async def test_a_spent_second_budget_takes_no_unit_of_the_first(store: Store) -> None:
    """The number's budget refuses: the user's budget is untouched, all or nothing."""
    at = now()
    await take(store, at, number(1))
    assert (await refusal(store, at, user(1), number(1))).subject == "phone"
    await take(store, at, user(1))


async def test_an_id_already_used_takes_no_unit(store: Store) -> None:
    """Opening an id a second time is ChallengeAlreadyExists and charges nothing."""
    at = now()
    challenge = await take(store, at, user(2))
    with pytest.raises(ChallengeAlreadyExists):
        await store.challenges.open_challenge(challenge, CONTEXT, (user(2),))
    await take(store, at, user(2))


async def test_a_resend_takes_a_unit_and_a_refused_budget_spends_no_resend(store: Store) -> None:
    """A resend takes a unit of each charge; once the budget is spent it is refused and spends no resend."""
    at = now()
    challenge = await take(store, at, user(2))
    later = at + timedelta(seconds=30)
    assert (
        await store.challenges.record_resend(challenge.challenge_id, later, CONTEXT, (user(2),))
    ).resends == 1
    with pytest.raises(SendBudgetExhausted):
        await store.challenges.record_resend(
            challenge.challenge_id, later + timedelta(seconds=30), CONTEXT, (user(2),)
        )
    assert (await store.challenges.get_challenge(challenge.challenge_id)).resends == 1


async def test_subjects_have_separate_budgets(store: Store) -> None:
    """The user's spent budget does not touch the number's."""
    at = now()
    await take(store, at, user(1))
    await take(store, at, number(1))


@pytest.mark.integration
async def test_a_budget_key_names_the_number_by_hash_only(
    redis_store: RedisState, redis_client: aioredis.Redis
) -> None:
    """In Redis the number's budget lives under `{sb}:phone:<hash>` (the slot it shares with the caller's and
    global budgets, decision 0046), and no key holds the number."""
    await take(redis_store, now(), number(1))
    keys = [key async for key in redis_client.scan_iter("*{sb}*")]
    assert keys == [f"sesame:{{sb}}:phone:{NUMBER.key}".encode()]
    assert not [key async for key in redis_client.scan_iter("*33612345678*")]


async def test_a_withdrawn_resend_gives_back_the_resend_and_the_users_unit(store: Store) -> None:
    """A resend whose other units were refused (decision 0046) is undone: its count, its last send time
    and its user's unit come back, journaled `withdrawn`; a second withdrawal of it changes nothing."""
    at = now()
    own = Charge(BudgetSubject.user(factories.a_challenge(at).user_id), 2, WINDOW)  # the challenge's user's
    challenge = await take(store, at, own)
    later = at + timedelta(seconds=30)
    await store.challenges.record_resend(challenge.challenge_id, later, CONTEXT, (own,), "h-1")
    for _ in range(2):
        await store.challenges.withdraw_resend(challenge, later, CONTEXT, hold="h-1")
    undone = await store.challenges.get_challenge(challenge.challenge_id)
    assert (undone.resends, undone.last_sent_at) == (0, challenge.last_sent_at)
    await take(store, later, own)  # the user's second unit is free again
    journal = await store.journal.challenge_journal(challenge.challenge_id)
    assert [e["outcome"] for e in journal if e["event"] == "challenge.resend"] == ["resent", "withdrawn"]

"""The send-budget half of the StateStore contract: the fake and Redis take, refuse and give back alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_store import RedisStateStore
from sesame.server.domain.budgets import BudgetSubject
from sesame.server.domain.errors import SendBudgetExhausted
from tests.fakes.state_store import MemoryStateStore

Store = MemoryStateStore | RedisStateStore

USER = BudgetSubject.user("alice")
NUMBER = BudgetSubject.phone("+33612345678")
WINDOW = timedelta(hours=1)


def now() -> datetime:
    """The real present to the millisecond: Redis expires a budget's key by its own wall clock."""
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


async def refusal(store: Store, subject: BudgetSubject, at: datetime, limit: int) -> SendBudgetExhausted:
    """The refusal of one more take at `at`."""
    with pytest.raises(SendBudgetExhausted) as refused:
        await store.take_send_budget(subject, at, limit, WINDOW)
    return refused.value


async def test_takes_pass_up_to_the_limit(store: Store) -> None:
    """Three takes fit a limit of three; the fourth is refused on the subject's kind."""
    at = now()
    for i in range(3):
        await store.take_send_budget(USER, at + timedelta(seconds=i), 3, WINDOW)
    assert (await refusal(store, USER, at + timedelta(seconds=3), 3)).subject == "user"


async def test_takes_at_the_same_millisecond_all_count(store: Store) -> None:
    """Two takes at one instant are two units, not one."""
    at = now()
    await store.take_send_budget(NUMBER, at, 2, WINDOW)
    await store.take_send_budget(NUMBER, at, 2, WINDOW)
    assert (await refusal(store, NUMBER, at, 2)).subject == "phone"


async def test_the_wait_is_exact_to_the_millisecond(store: Store) -> None:
    """Refused 1.234 s after the only unit was taken, the wait is the window less 1.234 s."""
    at = now()
    await store.take_send_budget(USER, at, 1, WINDOW)
    later = at + timedelta(milliseconds=1234)
    assert (await refusal(store, USER, later, 1)).retry_after == WINDOW - timedelta(milliseconds=1234)


async def test_the_window_slides(store: Store) -> None:
    """One millisecond before the window's end the unit still counts; at its end it has freed."""
    at = now()
    await store.take_send_budget(USER, at, 1, WINDOW)
    assert (await refusal(store, USER, at + WINDOW - timedelta(milliseconds=1), 1)).retry_after == timedelta(
        milliseconds=1
    )
    await store.take_send_budget(USER, at + WINDOW, 1, WINDOW)


async def test_a_refusal_writes_nothing(store: Store) -> None:
    """A refused take leaves no unit: when the first unit frees, exactly one more take fits."""
    at = now()
    await store.take_send_budget(USER, at, 2, WINDOW)
    await store.take_send_budget(USER, at + timedelta(seconds=10), 2, WINDOW)
    await refusal(store, USER, at + timedelta(seconds=20), 2)
    await store.take_send_budget(USER, at + WINDOW, 2, WINDOW)
    assert (await refusal(store, USER, at + WINDOW, 2)).retry_after == timedelta(seconds=10)


async def test_a_returned_unit_can_be_taken_again(store: Store) -> None:
    """A unit given back at the instant it was taken frees room for one more take."""
    at = now()
    await store.take_send_budget(USER, at, 1, WINDOW)
    await store.return_send_budget(USER, at)
    await store.take_send_budget(USER, at, 1, WINDOW)


async def test_returning_a_unit_never_taken_changes_nothing(store: Store) -> None:
    """A return at an instant no unit was taken gives back nothing."""
    at = now()
    await store.take_send_budget(USER, at, 1, WINDOW)
    await store.return_send_budget(USER, at + timedelta(seconds=1))
    await refusal(store, USER, at + timedelta(seconds=2), 1)


async def test_subjects_have_separate_budgets(store: Store) -> None:
    """The user's spent budget does not touch the number's."""
    at = now()
    await store.take_send_budget(USER, at, 1, WINDOW)
    await store.take_send_budget(NUMBER, at, 1, WINDOW)


@pytest.mark.integration
async def test_a_budget_key_names_the_number_by_hash_only(
    redis_store: RedisStateStore, redis_client: aioredis.Redis
) -> None:
    """In Redis the number's budget lives under `{sb:phone:<hash>}`, and no key holds the number."""
    await redis_store.take_send_budget(NUMBER, now(), 1, WINDOW)
    assert [key async for key in redis_client.scan_iter("*")] == [
        f"sesame:{{sb:phone:{NUMBER.key}}}:sends".encode()
    ]

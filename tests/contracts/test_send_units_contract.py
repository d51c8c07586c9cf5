"""The SendUnits contract (decision 0046): the number's, caller's and global units held for an SMS in their
own slot, spent once before it is handed over, given back on a refusal, and no longer counting past the
grace when nobody spends them; the fake and Redis alike."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.budgets import BudgetSubject, Charge, Hold, Spending
from sesame.server.domain.errors import SendBudgetExhausted
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState

NUMBER = BudgetSubject.phone("+33612345678")
OTHER_NUMBER = BudgetSubject.phone("+33698765432")
CALLER = BudgetSubject.caller("bank-app")
EVERYONE = BudgetSubject.overall()
WINDOW = timedelta(hours=1)
GRACE = timedelta(seconds=10)
_names = itertools.count(1)


def now() -> datetime:
    """The real present to the millisecond: Redis expires the holds' keys by its own wall clock."""
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def a_hold(at: datetime) -> Hold:
    """A hold of a new name, taken at `at`, kept (if never spent) as long as a challenge lives."""
    return Hold(f"c{next(_names)}.{at.timestamp()}", at, at + timedelta(minutes=5), GRACE)


def of(subject: BudgetSubject, limit: int) -> Charge:
    return Charge(subject, limit, WINDOW)


async def held(store: Store, at: datetime, *charges: Charge) -> Hold:
    hold = a_hold(at)
    await store.send_units.take(hold, charges)
    return hold


async def refusal(store: Store, at: datetime, *charges: Charge) -> SendBudgetExhausted:
    with pytest.raises(SendBudgetExhausted) as refused:
        await store.send_units.take(a_hold(at), charges)
    return refused.value


async def test_holds_count_up_to_the_limit_and_the_refusal_names_the_first_spent_budget(store: Store) -> None:
    """Two holds fill a number's budget of two; a third is refused on `phone` with the exact wait."""
    at = now()
    await held(store, at, of(NUMBER, 2), of(EVERYONE, 10))
    await held(store, at + timedelta(seconds=1), of(NUMBER, 2), of(EVERYONE, 10))
    refused = await refusal(store, at + timedelta(seconds=2), of(CALLER, 10), of(NUMBER, 2), of(EVERYONE, 10))
    assert (refused.subject, refused.retry_after) == ("phone", WINDOW - timedelta(seconds=2))


async def test_a_refused_take_writes_nothing(store: Store) -> None:
    """The global budget refuses: the caller's budget of one, listed first, took nothing."""
    at = now()
    await held(store, at, of(EVERYONE, 1))
    assert (await refusal(store, at, of(CALLER, 1), of(EVERYONE, 1))).subject == "global"
    await held(store, at, of(CALLER, 1))


async def test_a_spent_hold_counts_for_the_window_from_its_take(store: Store) -> None:
    """Spent past the grace, a unit still counts until the window ends after it was taken."""
    at = now()
    hold = await held(store, at, of(NUMBER, 1))
    assert await store.send_units.spend(hold.name, NUMBER, at + timedelta(seconds=1), GRACE) is Spending.SPENT
    later = at + GRACE + timedelta(minutes=1)
    assert (await refusal(store, later, of(NUMBER, 1))).retry_after == WINDOW - GRACE - timedelta(minutes=1)


async def test_spending_twice_answers_spent_and_counts_once(store: Store) -> None:
    """A retry of the same SMS finds its units spent: SPENT again, no second unit."""
    at = now()
    hold = await held(store, at, of(NUMBER, 2))
    for _ in range(2):
        assert await store.send_units.spend(hold.name, NUMBER, at, GRACE) is Spending.SPENT
    await held(store, at, of(NUMBER, 2))


async def test_a_take_of_a_spent_name_holds_nothing(store: Store) -> None:
    """A retried Start or Resend after its SMS left takes its name again (decisions 0062, 0065): nothing
    held, so the spent unit is counted once, not once more for the grace."""
    at = now()
    hold = await held(store, at, of(NUMBER, 2))
    assert await store.send_units.spend(hold.name, NUMBER, at, GRACE) is Spending.SPENT
    await store.send_units.take(hold, (of(NUMBER, 2),))
    await held(store, at, of(NUMBER, 2))


async def test_a_hold_nobody_spends_stops_counting_after_the_grace(store: Store) -> None:
    """A take whose Start crashed before its step: counted within the grace, not after it."""
    at = now()
    await held(store, at, of(NUMBER, 1))
    assert (await refusal(store, at + GRACE - timedelta(milliseconds=1), of(NUMBER, 1))).retry_after == (
        WINDOW - GRACE + timedelta(milliseconds=1)
    )
    await held(store, at + GRACE, of(NUMBER, 1))


async def test_a_released_hold_gives_its_units_back_and_is_never_spent(store: Store) -> None:
    """Released (its step refused): the unit counts no more, a spend answers WITHDRAWN, a late take of
    the same name holds nothing."""
    at = now()
    hold = await held(store, at, of(NUMBER, 1))
    await store.send_units.release(hold.name, GRACE)  # an SMS was queued under it: marked withdrawn
    assert await store.send_units.spend(hold.name, NUMBER, at, GRACE) is Spending.WITHDRAWN
    await store.send_units.take(hold, (of(NUMBER, 1),))
    await held(store, at, of(NUMBER, 1))


async def test_no_hold_or_another_numbers_hold_is_unheld(store: Store) -> None:
    """Nothing taken under the name, or taken for another number than the SMS goes to: UNHELD."""
    at = now()
    assert await store.send_units.spend("never-taken", NUMBER, at, GRACE) is Spending.UNHELD
    hold = await held(store, at, of(OTHER_NUMBER, 5), of(EVERYONE, 5))
    assert await store.send_units.spend(hold.name, NUMBER, at, GRACE) is Spending.UNHELD


async def test_a_second_take_of_a_name_holds_a_budget_once_and_drops_what_it_is_told(store: Store) -> None:
    """Start's cold path: the number found by the step is held under the same name, the one expected is
    dropped; the number's budget of one is then free for the dropped number, spent for the found one."""
    at = now()
    hold = await held(store, at, of(OTHER_NUMBER, 1), of(EVERYONE, 5))
    await store.send_units.take(hold, (of(NUMBER, 1), of(EVERYONE, 5)), (of(OTHER_NUMBER, 1),))
    assert await store.send_units.spend(hold.name, NUMBER, at, GRACE) is Spending.SPENT
    assert (await refusal(store, at, of(NUMBER, 1))).subject == "phone"
    await held(store, at, of(OTHER_NUMBER, 1), of(EVERYONE, 3))  # the global unit was held once: 2 now
    assert (await refusal(store, at, of(EVERYONE, 2))).subject == "global"


async def test_a_lapsed_hold_is_taken_again_when_spent_if_the_budget_allows(store: Store) -> None:
    """An SMS that waited past the grace (no dispatcher running): spent now when its budget has room;
    EXHAUSTED (not sent) when others filled it meanwhile."""
    at = now()
    late = at + GRACE + timedelta(seconds=1)
    waiting = await held(store, at, of(NUMBER, 1))
    assert await store.send_units.spend(waiting.name, NUMBER, late, GRACE) is Spending.SPENT
    assert (await refusal(store, late, of(NUMBER, 1))).retry_after == WINDOW
    crowded = await held(store, at, of(OTHER_NUMBER, 1))
    await held(store, late, of(OTHER_NUMBER, 1))
    assert await store.send_units.spend(crowded.name, OTHER_NUMBER, late, GRACE) is Spending.EXHAUSTED


async def test_a_release_without_a_queued_sms_leaves_nothing(store: Store) -> None:
    """Released after a refused step (nothing queued): the units come back and the name may be held again."""
    at = now()
    hold = await held(store, at, of(NUMBER, 1))
    await store.send_units.release(hold.name)
    assert await store.send_units.spend(hold.name, NUMBER, at, GRACE) is Spending.UNHELD
    await store.send_units.take(hold, (of(NUMBER, 1),))
    assert await store.send_units.spend(hold.name, NUMBER, at, GRACE) is Spending.SPENT

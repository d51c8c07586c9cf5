"""The start half of the State contract: Start's one step reads the user, refuses with the waits of
today's errors, claims the request id, charges and opens, on the fake and on Redis alike (decision 0025)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengeRef, user_tag
from sesame.server.domain.destinations import DEFAULT_COUNTRIES
from sesame.server.domain.errors import (
    ChallengeNotFound,
    DestinationNotAllowed,
    InvalidRequest,
    PhoneCooling,
    PhoneUnchanged,
    SendBudgetExhausted,
    UserBlocked,
    UserNotActive,
    UserNotFound,
)
from sesame.server.domain.lifecycle import ByOverride, PhoneChange, Provenance
from sesame.server.domain.model import ChallengeStatus, RequestContext, UserStatus
from sesame.server.domain.opening import Opening
from sesame.server.domain.operation import ChangePhone, CreditTransfer, Login, Money, Operation, Payee
from tests import factories
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState

USER_ID = "u-1"
NEW_PHONE = "+33698765432"
TRANSFER = CreditTransfer(Money("EUR", 125000), Payee("Jean DUPONT", "FR7630006000011234567890189"), "tx-1")
_nonces = itertools.count(1)


def now() -> datetime:
    """The real present to the millisecond: Redis expires budgets and claims by its own wall clock."""
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def an_opening(operation: Operation = TRANSFER, request_id: str = "", **changes: object) -> Opening:
    """A Start of a new challenge for `u-1` now, under the default countries and budgets."""
    at = now()
    ref = ChallengeRef(next(_nonces).to_bytes(16, "big"), 1, 6, user_tag(USER_ID))
    opening = Opening(
        challenge_id=ref.challenge_id,
        user_id=USER_ID,
        operation=operation,
        nonce=ref.nonce,
        key_version=1,
        digits=6,
        created_at=at,
        expires_at=at + timedelta(minutes=5),
        max_attempts=3,
        max_resends=3,
        resend_spacing=timedelta(seconds=30),
        cooled=not isinstance(operation, Login),
        countries=DEFAULT_COUNTRIES,
        budget=SendBudget(),
        context=RequestContext(caller="svc"),
        request_id=request_id,
    )
    return dataclasses.replace(opening, **changes)


async def enrolled(store: Store, **changes: object) -> None:
    """Enrol `u-1` (client-1, +33612345678, fr), ACTIVE unless told otherwise."""
    user = factories.a_user(now() - timedelta(days=30), **changes)
    await store.users.register_user(dataclasses.replace(user, **changes))


async def test_start_opens_for_the_users_current_number_client_and_locale(store: Store) -> None:
    """The step reads the user: the challenge is OPEN, for its number, client and locale, and queued."""
    await enrolled(store, locale="de")
    opened = await store.challenges.start_challenge(an_opening())
    assert opened.queued
    stored = await store.challenges.get_challenge(opened.challenge.challenge_id)
    assert stored == opened.challenge
    assert (stored.phone, stored.client_id, stored.locale) == (factories.PHONE, "client-1", "de")
    assert stored.status is ChallengeStatus.OPEN


async def test_a_retried_request_answers_its_challenge_and_charges_nothing(store: Store) -> None:
    """The same request id again: the first challenge, not queued, and no unit of a budget of one."""
    await enrolled(store)
    one = SendBudget(per_user=1, per_phone=1)
    first = await store.challenges.start_challenge(an_opening(request_id="r-1", budget=one))
    again = await store.challenges.start_challenge(an_opening(request_id="r-1", budget=one))
    assert (again.challenge.challenge_id, again.queued) == (first.challenge.challenge_id, False)
    with pytest.raises(SendBudgetExhausted):
        await store.challenges.start_challenge(an_opening(request_id="r-2", budget=one))


async def test_a_request_id_is_claimed_once_its_challenge_opens_and_per_user(store: Store) -> None:
    """`start_claimed` reads the claim the step writes: none before, one after, none for another user's or
    another request id, and none once a refusal took it back (a void for the send budget)."""
    await enrolled(store)
    assert not await store.challenges.start_claimed(USER_ID, "r-1")
    await store.challenges.start_challenge(an_opening(request_id="r-1"))
    assert await store.challenges.start_claimed(USER_ID, "r-1")
    assert not await store.challenges.start_claimed(USER_ID, "r-2")
    assert not await store.challenges.start_claimed("u-2", "r-1")
    with pytest.raises(SendBudgetExhausted):  # refused: nothing written, nothing claimed
        await store.challenges.start_challenge(an_opening(request_id="r-3", budget=SendBudget(per_user=1)))
    assert not await store.challenges.start_claimed(USER_ID, "r-3")


async def test_a_request_id_for_another_operation_is_invalid(store: Store) -> None:
    """The same request id for another operation is InvalidRequest on `request_id`, nothing opened."""
    await enrolled(store)
    await store.challenges.start_challenge(an_opening(request_id="r-1"))
    with pytest.raises(InvalidRequest) as refused:
        await store.challenges.start_challenge(an_opening(Login(), request_id="r-1"))
    assert [v.field for v in refused.value.violations] == ["request_id"]


async def test_request_ids_are_per_user(store: Store) -> None:
    """Two users may use the same request id independently."""
    await enrolled(store)
    await enrolled(store, user_id="u-2")
    first = await store.challenges.start_challenge(an_opening(request_id="r-1"))
    ref = ChallengeRef(next(_nonces).to_bytes(16, "big"), 1, 6, user_tag("u-2"))
    other = an_opening(request_id="r-1", user_id="u-2", challenge_id=ref.challenge_id, nonce=ref.nonce)
    second = await store.challenges.start_challenge(other)
    assert second.queued
    assert second.challenge.challenge_id != first.challenge.challenge_id


async def test_an_unknown_or_inactive_user_is_refused(store: Store) -> None:
    """No user: UserNotFound; a suspended one: UserNotActive."""
    with pytest.raises(UserNotFound):
        await store.challenges.start_challenge(an_opening())
    await enrolled(store, status=UserStatus.SUSPENDED)
    with pytest.raises(UserNotActive):
        await store.challenges.start_challenge(an_opening())


async def test_a_blocked_user_is_refused_with_the_wait(store: Store) -> None:
    """A user blocked ten minutes more: UserBlocked with those ten minutes."""
    opening = an_opening()
    await enrolled(store, blocked_until=opening.created_at + timedelta(minutes=10))
    with pytest.raises(UserBlocked) as refused:
        await store.challenges.start_challenge(opening)
    assert refused.value.retry_after == timedelta(minutes=10)


async def test_a_cooling_number_holds_back_money_not_login(store: Store) -> None:
    """While the number cools: a transfer is PhoneCooling with the wait, a login opens."""
    opening = an_opening()
    await enrolled(store, cooling_until=opening.created_at + timedelta(hours=2))
    with pytest.raises(PhoneCooling) as refused:
        await store.challenges.start_challenge(opening)
    assert refused.value.retry_after == timedelta(hours=2)
    assert (await store.challenges.start_challenge(an_opening(Login()))).queued


async def test_a_number_outside_the_countries_is_refused_before_any_unit(store: Store) -> None:
    """A French number when only Germany is allowed: DestinationNotAllowed naming FR, no unit taken."""
    await enrolled(store)
    one = SendBudget(per_user=1)
    with pytest.raises(DestinationNotAllowed) as refused:
        await store.challenges.start_challenge(an_opening(countries=frozenset({"DE"}), budget=one))
    assert str(refused.value) == "FR"
    assert (await store.challenges.start_challenge(an_opening(budget=one))).queued


async def test_a_number_under_a_shared_calling_code_is_checked_by_region(store: Store) -> None:
    """+47 is Norway's and Svalbard's: a Norwegian number opens when only Norway is allowed, not when
    only Svalbard is."""
    await enrolled(store, secure_phone="+4741234567")
    with pytest.raises(DestinationNotAllowed):
        await store.challenges.start_challenge(an_opening(countries=frozenset({"SJ"})))
    opened = await store.challenges.start_challenge(an_opening(countries=frozenset({"NO"})))
    assert opened.challenge.phone == "+4741234567"


async def test_the_step_takes_the_users_unit_only(store: Store) -> None:
    """The number's, caller's and global units are held apart, in their own slot (decision 0046): a budget
    of one per number lets a second Start open; the user's budget of one refuses it in the step."""
    await enrolled(store)
    number_of_one = SendBudget(per_phone=1, per_caller=1, overall=1)
    await store.challenges.start_challenge(an_opening(budget=number_of_one))
    assert (await store.challenges.start_challenge(an_opening(budget=number_of_one))).queued
    with pytest.raises(SendBudgetExhausted) as refused:
        await store.challenges.start_challenge(an_opening(budget=SendBudget(per_user=2)))
    assert refused.value.subject == "user"


@pytest.mark.parametrize(
    ("number", "countries"),
    [(factories.PHONE, DEFAULT_COUNTRIES), ("+4741234567", frozenset({"NO"}))],
    ids=["whole-calling-code", "shared-calling-code"],
)
async def test_a_change_to_the_stored_number_is_refused_before_its_request_id_and_units(
    store: Store, number: str, countries: frozenset[str]
) -> None:
    """A change_phone to the number stored is PhoneUnchanged naming the user, nothing written: its request
    id and the user's one unit still open a login, and the refused challenge does not exist. Under +47 (Norway
    and Svalbard) the step runs twice, the second time for the number checked by region: refused there too."""
    await enrolled(store, secure_phone=number)
    one = SendBudget(per_user=1)
    refused = an_opening(ChangePhone(number), request_id="r-1", budget=one, countries=countries)
    with pytest.raises(PhoneUnchanged) as caught:
        await store.challenges.start_challenge(refused)
    assert str(caught.value) == USER_ID
    with pytest.raises(ChallengeNotFound):
        await store.challenges.get_challenge(refused.challenge_id)
    assert (await store.challenges.start_challenge(an_opening(Login(), request_id="r-1", budget=one))).queued


async def test_a_change_is_compared_with_the_number_stored_when_the_step_runs(store: Store) -> None:
    """After the number was changed to +33698765432 (an override), a change to it is PhoneUnchanged and a
    change back to the first number opens: the step compares with the number it reads as it opens."""
    await enrolled(store)
    at = now()
    override = PhoneChange(
        USER_ID,
        NEW_PHONE,
        at,
        at,
        ByOverride("agent-7"),
        Provenance("ops-1", "lost", "c-1"),
        RequestContext(),
    )
    await store.users.change_secure_phone(override)
    with pytest.raises(PhoneUnchanged):
        await store.challenges.start_challenge(an_opening(ChangePhone(NEW_PHONE)))
    assert (await store.challenges.start_challenge(an_opening(ChangePhone(factories.PHONE)))).queued

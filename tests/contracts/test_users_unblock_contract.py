"""The State contract for UnblockUser: the fake and Redis lift a block and journal it alike."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import (
    ChallengeMismatch,
    NoopsFull,
    RequestIdReused,
    UserNotActive,
    UserNotFound,
)
from sesame.server.domain.lifecycle import (
    ByOverride,
    PhoneChange,
    Provenance,
    StatusAction,
    StatusChange,
    StatusChanged,
    Unblocking,
    UnblockOutcome,
)
from sesame.server.domain.model import LockoutPolicy, RequestContext, UserStatus, VerificationAttempt
from sesame.server.domain.noops import NoopLimits
from tests import factories
from tests.contracts.conftest import WallClock
from tests.fakes.journal_fields import iso, unix_ms
from tests.fakes.state import MemoryState, memory_state

Store = MemoryState | RedisState

NOW = datetime.now(UTC).replace(microsecond=0)
LOCKOUT = LockoutPolicy(max_failures=2)
MS = timedelta(milliseconds=1)
CONTEXT = RequestContext(ip="203.0.113.7", session_id="sess-1")
BY = Provenance(
    actor="ops-42", reason="identité vérifiée par téléphone", request_id="ub-1", caller="backoffice"
)


def unblocking(request_id: str = "ub-1", **changes: str) -> Unblocking:
    return Unblocking("u-1", NOW, dataclasses.replace(BY, request_id=request_id, **changes))


async def enrolled(store: Store) -> None:
    await store.users.register_user(factories.a_user(NOW - timedelta(days=30)))


async def failed(store: Store, times: int, first: int = 0) -> None:
    """Submit `times` wrong codes, each on a challenge of its own (so that no challenge locks first), all
    opened first (a blocked user gets no new challenge)."""
    challenges = [factories.a_challenge(NOW, nonce=bytes([n]) * 16) for n in range(first, first + times)]
    for challenge in challenges:
        await store.challenges.open_challenge(challenge, CONTEXT)
    for challenge in challenges:
        wrong = VerificationAttempt(challenge.challenge_id, challenge.op_digest, False, NOW, CONTEXT)
        await store.challenges.record_verification(wrong, LOCKOUT)


async def last_entry(store: Store) -> dict[str, str]:
    return (await store.users.user_journal("u-1"))[-1]


async def test_an_unblock_clears_the_block_and_keeps_the_count_of_blocks(store: Store) -> None:
    """A blocked user's block end and wrong codes are cleared; `blocks` stays, so the next block is longer."""
    await enrolled(store)
    await failed(store, 3)  # blocked at the second; the third is refused unevaluated (USER_BLOCKED)
    blocked = await store.users.get_user("u-1")
    assert blocked.blocked_until is not None
    unblocked = await store.users.unblock_user(unblocking())
    assert unblocked.outcome is UnblockOutcome.UNBLOCKED
    assert (unblocked.user.failures, unblocked.user.blocks, unblocked.user.blocked_until) == (0, 1, None)
    assert await store.users.get_user("u-1") == unblocked.user


async def test_an_unblock_is_journaled_with_who_why_and_what_was_lifted(store: Store) -> None:
    """The entry names the actor, the reason, the request, the calling service, and the block it lifted."""
    await enrolled(store)
    await failed(store, 2)
    blocked_until = (await store.users.get_user("u-1")).blocked_until
    await store.users.unblock_user(unblocking())
    assert await last_entry(store) == {
        "event": "user.unblock",
        "at": iso(NOW),
        "user_id": "u-1",
        "actor": "ops-42",
        "reason": "identité vérifiée par téléphone",
        "request_id": "ub-1",
        "caller": "backoffice",
        "outcome": "unblocked",
        "status": "active",
        "failures": "0",
        "blocks": "1",
        "blocked_until": unix_ms(blocked_until),
    }


async def test_wrong_codes_in_a_row_below_a_block_are_cleared_too(store: Store) -> None:
    """One wrong code short of a block: the count starts again from zero."""
    await enrolled(store)
    await failed(store, 1)
    unblocked = await store.users.unblock_user(unblocking())
    assert (unblocked.outcome, unblocked.user.failures) == (UnblockOutcome.UNBLOCKED, 0)


async def test_a_user_with_nothing_to_lift_is_unchanged_and_journaled(store: Store) -> None:
    """Unblocking a user who is not blocked changes nothing, and says so in the journal."""
    await enrolled(store)
    before = await store.users.get_user("u-1")
    unblocked = await store.users.unblock_user(unblocking())
    assert (unblocked.outcome, unblocked.user) == (UnblockOutcome.UNCHANGED, before)
    assert (await last_entry(store))["outcome"] == "unchanged"


async def test_a_retried_unblock_is_replayed_without_an_entry(store: Store) -> None:
    """The same request again answers REPLAYED and writes nothing, even after new wrong codes."""
    await enrolled(store)
    await failed(store, 2)
    await store.users.unblock_user(unblocking())
    await failed(store, 1, first=2)
    journaled = await store.users.user_journal("u-1")
    again = await store.users.unblock_user(unblocking())
    assert (again.outcome, again.user.failures) == (UnblockOutcome.REPLAYED, 1)
    assert await store.users.user_journal("u-1") == journaled


async def test_a_request_id_of_another_change_is_refused(store: Store) -> None:
    """A suspension's request id cannot unblock: RequestIdReused, and nothing is written."""
    await enrolled(store)
    await failed(store, 2)
    await store.users.change_user_status(StatusChange("u-1", StatusAction.SUSPEND, NOW, BY))
    before = (await store.users.get_user("u-1"), await store.users.user_journal("u-1"))
    with pytest.raises(RequestIdReused):
        await store.users.unblock_user(unblocking())
    assert (await store.users.get_user("u-1"), await store.users.user_journal("u-1")) == before


async def test_a_revoked_user_is_refused_and_it_is_journaled(store: Store) -> None:
    """A revoked user is final: UserNotActive, nothing cleared, the refusal journaled."""
    await enrolled(store)
    await failed(store, 2)
    await store.users.change_user_status(StatusChange("u-1", StatusAction.REVOKE, NOW, BY))
    before = await store.users.get_user("u-1")
    with pytest.raises(UserNotActive):
        await store.users.unblock_user(unblocking("ub-2"))
    assert await store.users.get_user("u-1") == before
    assert (await last_entry(store))["outcome"] == "refused"


async def test_an_unknown_user_is_not_found(store: Store) -> None:
    """Unblocking a user never enrolled raises UserNotFound and writes nothing."""
    with pytest.raises(UserNotFound):
        await store.users.unblock_user(unblocking())
    assert await store.users.user_journal("u-1") == []


async def test_noops_are_journaled_twenty_an_hour_and_64_request_ids_kept_none_for_a_newer(
    store: Store,
) -> None:
    """70 unblocks with nothing to lift, a millisecond apart, each under a new request id (decisions 0054,
    0150): the first 64 answered, 20 of them journaled, the others counted, their ids remembered (a retry of
    the first answered, another call under one refused); the last 6 refused NoopsFull until the first id is
    24 hours old, neither journaled nor counted; then the next no-op is taken, with the count."""
    await enrolled(store)
    journaled = len(await store.users.user_journal("u-1"))
    for n in range(70):
        at = NOW + timedelta(milliseconds=n)
        provenance = dataclasses.replace(BY, request_id=f"n-{n}")
        if n < 64:
            done = await store.users.unblock_user(Unblocking("u-1", at, provenance))
            assert done.outcome is UnblockOutcome.UNCHANGED
            continue
        with pytest.raises(NoopsFull) as full:
            await store.users.unblock_user(Unblocking("u-1", at, provenance))
        assert full.value.retry_after == timedelta(hours=24) - timedelta(milliseconds=n)
    assert len(await store.users.user_journal("u-1")) == journaled + 20
    assert await store.users.applied_change("u-1", "n-0") is not None
    assert await store.users.applied_change("u-1", "n-63") is not None
    assert await store.users.applied_change("u-1", "n-64") is None
    retried = await store.users.unblock_user(unblocking("n-0"))
    assert retried.outcome is UnblockOutcome.REPLAYED
    with pytest.raises(RequestIdReused):
        await store.users.change_user_status(
            StatusChange("u-1", StatusAction.SUSPEND, NOW, dataclasses.replace(BY, request_id="n-63"))
        )
    later = Unblocking("u-1", NOW + timedelta(hours=24), dataclasses.replace(BY, request_id="later"))
    assert (await store.users.unblock_user(later)).outcome is UnblockOutcome.UNCHANGED
    assert (await last_entry(store))["unjournaled_before"] == "44"
    assert await store.users.applied_change("u-1", "n-0") is None  # 24 hours old: forgotten


# Settings other than the defaults (decision 0058): 3 no-ops journaled an hour, 5 request ids for 10 minutes.
LIMITS = NoopLimits(journaled_per_hour=3, ids_kept=5, ids_for=timedelta(minutes=10))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def limited(request: pytest.FixtureRequest) -> Store:
    """The fake and Redis, each given LIMITS: Redis through the scripts' arguments."""
    if request.param == "memory":
        return memory_state(purge_clock=WallClock(), noops=LIMITS)
    return RedisState.on(request.getfixturevalue("redis_client"), noops=LIMITS)


async def test_the_noop_limits_are_settings_that_the_scripts_apply(limited: Store) -> None:
    """Unblocks and suspensions that change nothing, each under a new request id: 3 of the hour journaled
    (a real suspension among them still is), the ids of the first 5 remembered, forgotten after 10 minutes
    (an unblock refused meanwhile); the next no-op of the next hour carries the count of those not
    journaled."""
    store = limited
    await enrolled(store)
    journaled = len(await store.users.user_journal("u-1"))

    async def noop(n: int, at: datetime, action: StatusAction | None = None) -> None:
        provenance = dataclasses.replace(BY, request_id=f"n-{n}")
        if action is None:
            await store.users.unblock_user(Unblocking("u-1", at, provenance))
        else:
            await store.users.change_user_status(StatusChange("u-1", action, at, provenance))

    for n in range(4):  # change_user_status.lua and unblock_user.lua alike
        await noop(n, NOW + timedelta(milliseconds=n), StatusAction.REINSTATE if n % 2 else None)
    suspended = dataclasses.replace(BY, request_id="s")
    await store.users.change_user_status(StatusChange("u-1", StatusAction.SUSPEND, NOW + MS * 10, suspended))
    for n in range(4, 8):  # the fifth id remembered; then no room: answered, journaled, not remembered
        await noop(n, NOW + MS * (20 + n), StatusAction.SUSPEND)
    with pytest.raises(NoopsFull) as full:  # nothing to lift, no room: refused, neither journaled nor counted
        await noop(50, NOW + MS * 30)
    assert full.value.retry_after == timedelta(minutes=10) - MS * 30
    assert len(await store.users.user_journal("u-1")) == journaled + 3 + 1
    remembered = [await store.users.applied_change("u-1", f"n-{n}") is not None for n in (0, 4, 5, 50)]
    assert remembered == [True, True, False, False]
    await noop(8, NOW + timedelta(minutes=11))
    assert [await store.users.applied_change("u-1", f"n-{n}") is not None for n in (7, 8)] == [False, True]
    assert await store.users.applied_change("u-1", "s") is not None  # a real change's id is kept
    await noop(9, NOW + timedelta(minutes=61))
    assert (await last_entry(store))["unjournaled_before"] == "6"


async def test_a_refused_number_change_is_a_noop_bounded_by_the_settings(limited: Store) -> None:
    """change_secure_phone.lua reads the same limits: of 4 changes whose expected number is not the user's,
    3 are journaled."""
    store = limited
    await enrolled(store)
    journaled = len(await store.users.user_journal("u-1"))
    for n in range(4):
        at = NOW + MS * n
        mismatched = PhoneChange(
            "u-1",
            "+33698765432",
            at,
            at + timedelta(hours=72),
            ByOverride("agent-7"),
            dataclasses.replace(BY, request_id=f"p-{n}"),
            CONTEXT,
            expected_phone="+33611111111",
        )
        with pytest.raises(ChallengeMismatch):
            await store.users.change_secure_phone(mismatched)
    assert len(await store.users.user_journal("u-1")) == journaled + 3


async def test_a_stale_reinstatement_retry_never_lifts_a_later_suspension(limited: Store) -> None:
    """The outside audit's sequence (decision 0150), with 5 ids kept: a reinstatement that changed nothing,
    a suspension, more suspensions of the suspended user than there is room for; the reinstatement retried
    is answered as it was (REPLAYED: the user stays suspended). Then, the user reinstated for real, a
    reinstatement that would change nothing finds no room: NoopsFull, the user as it was."""
    store = limited
    await enrolled(store)

    async def status(action: StatusAction, request_id: str, ms: int) -> StatusChanged:
        change = StatusChange("u-1", action, NOW + MS * ms, dataclasses.replace(BY, request_id=request_id))
        return await store.users.change_user_status(change)

    assert (await status(StatusAction.REINSTATE, "found", 0)).user.status is UserStatus.ACTIVE
    await status(StatusAction.SUSPEND, "stolen", 1)
    for n in range(8):
        await status(StatusAction.SUSPEND, f"again-{n}", 2 + n)
    assert (await status(StatusAction.REINSTATE, "found", 20)).user.status is UserStatus.SUSPENDED
    assert (await status(StatusAction.REINSTATE, "recovered", 21)).user.status is UserStatus.ACTIVE
    with pytest.raises(NoopsFull):
        await status(StatusAction.REINSTATE, "found-again", 22)
    assert await store.users.applied_change("u-1", "found-again") is None
    assert (await store.users.get_user("u-1")).status is UserStatus.ACTIVE


async def test_a_noops_request_id_is_forgotten_past_its_time_before_it_is_looked_up(limited: Store) -> None:
    """Found from outside: a suspension's id that changed nothing was still answered as that no-op ten
    minutes past a 60 s setting (forgotten only at the user's next no-op): a suspension retried under it
    later, the user reinstated since, left the user active. Past SESAME_NOOP_IDS_KEPT_SECONDS, it is a new
    call, as documented."""
    store = limited
    await enrolled(store)

    async def change(action: StatusAction, request_id: str, at: datetime) -> UserStatus:
        provenance = dataclasses.replace(BY, request_id=request_id)
        changed = await store.users.change_user_status(StatusChange("u-1", action, at, provenance))
        return changed.user.status

    assert await change(StatusAction.SUSPEND, "s-1", NOW) is UserStatus.SUSPENDED
    assert await change(StatusAction.SUSPEND, "s-2", NOW + MS) is UserStatus.SUSPENDED  # a no-op, remembered
    assert await change(StatusAction.REINSTATE, "r-1", NOW + MS * 2) is UserStatus.ACTIVE
    assert (
        await change(StatusAction.SUSPEND, "s-2", NOW + MS * 3) is UserStatus.ACTIVE
    )  # its retry: as before
    assert await store.users.applied_change("u-1", "s-2") is not None
    assert await change(StatusAction.SUSPEND, "s-2", NOW + timedelta(minutes=11)) is UserStatus.SUSPENDED

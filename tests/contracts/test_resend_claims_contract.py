"""The Resend request id's claim (decision 0065): taken in the resend's step, answered by that resend while
its challenge is open, refused on another challenge, given up with a withdrawn resend; the fake and Redis
alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import ChallengeClosed, InvalidRequest, ResendRefused
from sesame.server.domain.model import Challenge, RequestContext
from sesame.server.domain.resending import ResendClaim, Resent
from tests.contracts.test_start_challenge_contract import an_opening, enrolled
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState

CONTEXT = RequestContext(caller="svc", session_id="sess-1")
SPACING = timedelta(seconds=30)


async def started(store: Store) -> Challenge:
    """A new challenge of `u-1` (enrolled by the caller), opened now."""
    return (await store.challenges.start_challenge(an_opening())).challenge


async def resent(store: Store, challenge: Challenge, sends: int, request_id: str, hold: str = "") -> Resent:
    """A resend of `challenge` `sends` spacings after its opening, claiming `request_id`."""
    at = challenge.created_at + sends * SPACING
    claim = ResendClaim(challenge.user_id, request_id)
    return await store.challenges.record_resend_once(
        challenge.challenge_id, at, CONTEXT, (), hold or f"h-{sends}", claim=claim
    )


async def resends_journaled(store: Store, challenge: Challenge) -> list[str]:
    entries = await store.journal.challenge_journal(challenge.challenge_id)
    return [e["outcome"] for e in entries if e["event"] == "challenge.resend"]


async def test_a_claimed_resend_is_a_new_resend_with_its_hold(store: Store) -> None:
    """The first call with a request id takes a resend, as a resend without one does."""
    await enrolled(store)
    challenge = await started(store)
    first = await resent(store, challenge, 1, "r-1")
    assert (first.earlier, first.queued, first.challenge.resends) == (False, True, 1)


async def test_a_retry_answers_the_first_resend_and_takes_nothing(store: Store) -> None:
    """The same request id again, past the spacing: the first resend, its hold, its SMS queued; no resend
    taken, nothing journaled."""
    await enrolled(store)
    challenge = await started(store)
    await resent(store, challenge, 1, "r-1", hold="first")
    again = await resent(store, challenge, 2, "r-1", hold="second")
    assert (again.earlier, again.earlier_hold, again.queued) == (True, "first", True)
    assert again.challenge.resends == 1
    assert (await store.challenges.get_challenge(challenge.challenge_id)).resends == 1
    assert await resends_journaled(store, challenge) == ["resent"]


async def test_a_retry_answers_the_resends_left_as_after_the_first(store: Store) -> None:
    """A later resend of another request id does not change what the first one's retry answers."""
    await enrolled(store)
    challenge = await started(store)
    await resent(store, challenge, 1, "r-1")
    await resent(store, challenge, 2, "r-2")
    again = await resent(store, challenge, 3, "r-1")
    assert (again.earlier, again.challenge.resends, again.challenge.resends_left) == (True, 1, 2)


async def test_a_request_id_claimed_on_another_challenge_is_invalid(store: Store) -> None:
    """The same request id on another challenge of the user: InvalidRequest on `request_id`, nothing
    taken or journaled."""
    await enrolled(store)
    one, other = await started(store), await started(store)
    await resent(store, one, 1, "r-1")
    with pytest.raises(InvalidRequest) as refused:
        await resent(store, other, 1, "r-1")
    assert [v.field for v in refused.value.violations] == ["request_id"]
    assert (await store.challenges.get_challenge(other.challenge_id)).resends == 0
    assert await resends_journaled(store, other) == []


async def test_a_closed_challenge_refuses_its_retry(store: Store) -> None:
    """Once the challenge is cancelled, its resend's retry is refused as any resend: ChallengeClosed."""
    await enrolled(store)
    challenge = await started(store)
    await resent(store, challenge, 1, "r-1")
    await store.challenges.cancel_challenge(challenge.challenge_id, challenge.created_at + SPACING, CONTEXT)
    with pytest.raises(ChallengeClosed):
        await resent(store, challenge, 2, "r-1")


async def test_a_refused_resend_claims_nothing(store: Store) -> None:
    """A resend refused too soon writes no claim: the same request id later takes a resend."""
    await enrolled(store)
    challenge = await started(store)
    with pytest.raises(ResendRefused):
        await resent(store, challenge, 0, "r-1")
    taken = await resent(store, challenge, 1, "r-1")
    assert (taken.earlier, taken.challenge.resends) == (False, 1)


async def test_a_withdrawn_resend_gives_its_request_id_up(store: Store) -> None:
    """A resend withdrawn (its other units refused) gives up its claim: the retry takes a resend again."""
    await enrolled(store)
    challenge = await started(store)
    first = await resent(store, challenge, 1, "r-1")
    await store.challenges.withdraw_resend(challenge, first.challenge.last_sent_at, CONTEXT, "r-1")
    again = await resent(store, challenge, 2, "r-1")
    assert (again.earlier, again.challenge.resends) == (False, 1)

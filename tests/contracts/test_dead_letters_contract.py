"""The dead letters contract: a send that did not reach the phone is tried again or dead-lettered in one
step, with the reason on the challenge, a journal entry and a masked line; the fake and Redis alike
(docs/decisions/0033)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_store import RedisState
from sesame.server.domain.model import DeliveryState, RequestContext
from sesame.server.domain.ports import DeadLetters, Outbox
from sesame.server.domain.sent_text import SentText
from tests.contracts.test_start_challenge_contract import an_opening, enrolled
from tests.fakes.outbox import MemoryDeadLetters
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState
NO_WAIT = timedelta(milliseconds=1)
PHONE = "+33612345678"


@dataclass(frozen=True, slots=True)
class Beside:
    """The outbox and its dead letters beside the store."""

    outbox: Outbox
    dead: DeadLetters


@pytest.fixture
async def beside(store: Store) -> AsyncIterator[Beside]:
    """The fake's own outbox, or the streams in the store's Redis."""
    if isinstance(store, MemoryState):
        yield Beside(store.outbox, MemoryDeadLetters(store.outbox))
        return
    redis_outbox: RedisOutbox = store.outbox()
    try:
        yield Beside(redis_outbox, redis_outbox.dead_letters())
    finally:
        await redis_outbox.close()


async def test_a_failed_try_with_tries_left_stays_pending(store: Store, beside: Beside) -> None:
    """One try of three: the entry stays (claimable once idle), the challenge QUEUED, the try journaled."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await beside.outbox.take("a", 10, NO_WAIT)
    tried = await beside.outbox.fail(queued, "unreachable", opened.created_at, 3)
    assert (tried.tries, tried.dead_letter) == (1, "")
    assert (await store.challenges.get_challenge(opened.challenge_id)).delivery is DeliveryState.QUEUED
    (claimed,) = await beside.outbox.reclaim("b", timedelta(0), 10)
    assert claimed.entry_id == queued.entry_id
    last = (await store.journal.challenge_journal(opened.challenge_id))[-1]
    assert (last["event"], last["outcome"], last["failure"]) == (
        "challenge.delivery",
        "try_failed",
        "unreachable",
    )
    assert await beside.dead.recent(10) == []


async def test_a_failed_try_and_its_dead_letter_are_journaled_with_the_texts_record(
    store: Store, beside: Beside
) -> None:
    """A failed try, then the dead letter, each handed the text's record: both entries name its masked
    hash and template, as a send's entry does."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await beside.outbox.take("a", 10, NO_WAIT)
    record = SentText("ab" * 32, "fr/login", "cd" * 32, "ef" * 32)
    await beside.outbox.fail(queued, "unreachable", opened.created_at, 3, text=record)
    await beside.outbox.fail(queued, "bad_number", opened.created_at, 0, text=record)
    failed, dead = (await store.journal.challenge_journal(opened.challenge_id))[-2:]
    assert (failed["outcome"], dead["event"]) == ("try_failed", "challenge.dead_letter")
    for entry in (failed, dead):
        assert {name: entry[name] for name in record.journal_fields()} == record.journal_fields()


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("timeout", "unconfirmed"),
        ("lost", "unconfirmed"),
        ("partial", "unconfirmed"),
        ("unreachable", "max_tries"),
    ],
)
async def test_a_last_try_the_provider_may_have_taken_is_unconfirmed(
    store: Store, beside: Beside, failure: str, reason: str
) -> None:
    """The only try ends without the provider's answer (or with some parts taken): FAILED, reason
    `unconfirmed`, as the dead letter's line says: the phone may have got the code (decision 0096)."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await beside.outbox.take("a", 10, NO_WAIT)
    tried = await beside.outbox.fail(queued, failure, opened.created_at, 1)
    assert (tried.tries, tried.dead_letter) == (1, reason)
    stored = await store.challenges.get_challenge(opened.challenge_id)
    assert (stored.delivery, stored.delivery_reason) == (DeliveryState.FAILED, reason)
    (letter,) = await beside.dead.recent(10)
    assert (letter.reason, letter.failure) == (reason, failure)


@pytest.mark.parametrize(
    ("later", "allowed", "after"),
    [
        ("unreachable", 2, timedelta(0)),  # its tries spent
        ("bad_number", 0, timedelta(0)),  # every provider's final word
        ("unreachable", 3, timedelta(minutes=10)),  # its code expired meanwhile
    ],
)
async def test_an_earlier_try_the_provider_may_have_taken_makes_it_unconfirmed(
    store: Store, beside: Beside, later: str, allowed: int, after: timedelta
) -> None:
    """A first try timed out; whatever ends the entry later (its tries spent, a final word, its code's
    expiry) reads `unconfirmed` and FAILED: the phone may have the code (decision 0097). The dead letter's
    line keeps the last failure."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await beside.outbox.take("a", 10, NO_WAIT)
    assert (await beside.outbox.fail(queued, "timeout", opened.created_at, allowed or 2)).dead_letter == ""
    (claimed,) = await beside.outbox.reclaim("b", timedelta(0), 10)
    tried = await beside.outbox.fail(claimed, later, opened.created_at + after, allowed)
    assert (tried.tries, tried.dead_letter) == (2, "unconfirmed")
    stored = await store.challenges.get_challenge(opened.challenge_id)
    assert (stored.delivery, stored.delivery_reason) == (DeliveryState.FAILED, "unconfirmed")
    (letter,) = await beside.dead.recent(10)
    assert (letter.reason, letter.failure, letter.state) == ("unconfirmed", later, DeliveryState.FAILED)


async def test_a_resend_given_up_after_a_send_that_may_have_gone_is_unconfirmed(
    store: Store, beside: Beside
) -> None:
    """The challenge's first SMS was given up as `unconfirmed`; its resend (the same code) refused by every
    provider still reads `unconfirmed`, never the provider's word: the phone may have the code (0097)."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await beside.outbox.take("a", 10, NO_WAIT)
    assert (await beside.outbox.fail(queued, "lost", opened.created_at, 1)).dead_letter == "unconfirmed"
    later = opened.created_at + timedelta(seconds=61)
    await store.challenges.record_resend(opened.challenge_id, later, RequestContext())
    (again,) = await beside.outbox.take("a", 10, NO_WAIT)
    assert again.entry_id != queued.entry_id
    assert (await beside.outbox.fail(again, "bad_number", later, 0)).dead_letter == "unconfirmed"
    stored = await store.challenges.get_challenge(opened.challenge_id)
    assert (stored.delivery, stored.delivery_reason) == (DeliveryState.FAILED, "unconfirmed")


async def test_the_last_try_dead_letters_the_entry(store: Store, beside: Beside) -> None:
    """The second try of two (a claim counts as a try): FAILED, max_tries, journaled, a masked line."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await beside.outbox.take("a", 10, NO_WAIT)
    await beside.outbox.fail(queued, "unreachable", opened.created_at, 2)
    (claimed,) = await beside.outbox.reclaim("b", timedelta(0), 10)
    tried = await beside.outbox.fail(claimed, "throttled", opened.created_at, 2)
    assert (tried.tries, tried.dead_letter) == (2, "max_tries")
    stored = await store.challenges.get_challenge(opened.challenge_id)
    assert (stored.delivery, stored.delivery_reason) == (DeliveryState.FAILED, "max_tries")
    assert (await beside.outbox.backlog()).depth == 0
    assert await beside.outbox.reclaim("c", timedelta(0), 10) == []
    last = (await store.journal.challenge_journal(opened.challenge_id))[-1]
    assert (last["event"], last["outcome"], last["reason"], last["tries"]) == (
        "challenge.dead_letter",
        "failed",
        "max_tries",
        "2",
    )
    (letter,) = await beside.dead.recent(10)
    assert (
        letter.challenge_id,
        letter.user_id,
        letter.state,
        letter.reason,
        letter.failure,
        letter.tries,
    ) == (
        opened.challenge_id,
        "u-1",
        DeliveryState.FAILED,
        "max_tries",
        "throttled",
        2,
    )
    assert letter.masked_phone == "+33*******78"
    assert letter.queued_at == queued.queued_at


async def test_the_providers_final_word_dead_letters_at_once(store: Store, beside: Beside) -> None:
    """No try allowed (every provider refused): dead-lettered on the first try with their reason."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await beside.outbox.take("a", 10, NO_WAIT)
    tried = await beside.outbox.fail(queued, "bad_number", opened.created_at, 0)
    assert tried.dead_letter == "bad_number"
    stored = await store.challenges.get_challenge(opened.challenge_id)
    assert (stored.delivery, stored.delivery_reason) == (DeliveryState.FAILED, "bad_number")


async def test_an_expired_code_is_dead_lettered_expired(store: Store, beside: Beside) -> None:
    """A try at or after the code's expiry, tries left or not: EXPIRED, reason expired."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await beside.outbox.take("a", 10, NO_WAIT)
    tried = await beside.outbox.fail(queued, "unreachable", opened.expires_at, 3)
    assert tried.dead_letter == "expired"
    stored = await store.challenges.get_challenge(opened.challenge_id)
    assert (stored.delivery, stored.delivery_reason) == (DeliveryState.EXPIRED, "expired")
    (letter,) = await beside.dead.recent(10)
    assert letter.state is DeliveryState.EXPIRED


async def test_a_dead_letter_never_hides_an_earlier_send(store: Store, beside: Beside) -> None:
    """The first send went out; a resend's SMS dead-lettered: the challenge still reads SENT."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (first,) = await beside.outbox.take("a", 10, NO_WAIT)
    await beside.outbox.settle(first, DeliveryState.SENT, "ref-1", opened.created_at)
    await store.challenges.record_resend(
        opened.challenge_id, opened.created_at + timedelta(seconds=31), RequestContext()
    )
    (second,) = await beside.outbox.take("a", 10, NO_WAIT)
    await beside.outbox.fail(second, "refused", opened.created_at, 0)
    assert (await store.challenges.get_challenge(opened.challenge_id)).delivery is DeliveryState.SENT
    assert len(await beside.dead.recent(10)) == 1

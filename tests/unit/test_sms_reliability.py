"""The failover gateway's policy: retries only before acceptance, jittered, a breaker per provider."""

from __future__ import annotations

import asyncio

import pytest

from sesame.clients.sms_breaker import BreakerSettings, BreakerState
from sesame.clients.sms_failover import BreakerOpen, FailoverSmsGateway, Provider, Reliability
from sesame.clients.sms_policy import RetryPolicy
from sesame.server.domain.errors import DeliveryFailed, DeliveryFailure, DeliveryRefused
from sesame.server.domain.model import SentSms, SmsMessage
from tests.fakes.clock import FixedClock

MESSAGE = SmsMessage("+33612345678", "MaBanque: code 482913", "ch.k1.d6")


class Scripted:
    """A provider that answers each send with the next failure reason of its script, then accepts."""

    def __init__(self, *failures: DeliveryFailure) -> None:
        self.failures = list(failures)
        self.asked = 0

    async def send(self, message: SmsMessage) -> SentSms:
        self.asked += 1
        if self.failures:
            raise DeliveryFailed("scripted", self.failures.pop(0))
        return SentSms(f"ok-{self.asked}", FixedClock().now())


class Observed:
    """What the gateway told its observer."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self.breakers: list[tuple[str, BreakerState]] = []

    def attempted(self, provider: str, outcome: str) -> None:
        self.attempts.append((provider, outcome))

    def breaker_changed(self, provider: str, state: BreakerState) -> None:
        self.breakers.append((provider, state))


class Sleeps:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _gateway(
    first: Scripted, second: Scripted, sleeps: Sleeps, observed: Observed, failures: int = 5
) -> FailoverSmsGateway:
    reliability = Reliability(
        retry=RetryPolicy(retries=2, base_seconds=0.2, cap_seconds=2.0),
        breaker=BreakerSettings(failures=failures, open_seconds=30),
        sleep=sleeps,
        draw=lambda: 0.5,
    )
    return FailoverSmsGateway([Provider("kannel", first), Provider("smpp", second)], reliability, observed)


@pytest.mark.parametrize("reason", ["unreachable", "throttled", "unavailable"])
async def test_a_failure_before_acceptance_is_retried_at_the_same_provider(reason: DeliveryFailure):
    """Twice unreachable (or throttled, unavailable), then accepted: the first provider sent it."""
    first, second, sleeps, observed = Scripted(reason, reason), Scripted(), Sleeps(), Observed()
    sent = await _gateway(first, second, sleeps, observed).send(MESSAGE)
    assert (sent.provider_ref, first.asked, second.asked) == ("ok-3", 3, 0)
    assert observed.attempts == [("kannel", reason), ("kannel", reason), ("kannel", "sent")]


async def test_the_backoff_doubles_with_jitter():
    """Waits are draw x base x 2^n: 0.1 then 0.2 with a draw of 0.5 and a base of 0.2."""
    first, sleeps = Scripted("unreachable", "unreachable"), Sleeps()
    await _gateway(first, Scripted(), sleeps, Observed()).send(MESSAGE)
    assert sleeps.waits == [0.1, 0.2]


@pytest.mark.parametrize("reason", ["timeout", "lost", "partial", "bad_number", "bad_content", "refused"])
async def test_a_failure_that_may_follow_acceptance_or_is_final_goes_to_the_next_provider(
    reason: DeliveryFailure,
):
    """Timeout, lost connection, some parts taken, or the provider's final word: asked once, then the next."""
    first, second = Scripted(reason), Scripted()
    sent = await _gateway(first, second, Sleeps(), Observed()).send(MESSAGE)
    assert (first.asked, second.asked, sent.provider_ref) == (1, 1, "ok-1")


async def test_retries_are_bounded_then_the_next_provider_gets_it():
    """Unreachable on every try: three attempts at the first (2 retries), then the second takes it."""
    first, second = Scripted(*["unreachable"] * 5), Scripted()
    await _gateway(first, second, Sleeps(), Observed(), failures=100).send(MESSAGE)
    assert (first.asked, second.asked) == (3, 1)


async def test_an_open_breaker_skips_its_provider_without_asking_it():
    """Once three faults opened the first provider's breaker, messages go straight to the second."""
    first, second, observed = Scripted(*["timeout"] * 3), Scripted(), Observed()
    gateway = _gateway(first, second, Sleeps(), observed, failures=3)
    for _ in range(5):
        await gateway.send(MESSAGE)
    assert (first.asked, second.asked) == (3, 5)
    assert observed.breakers == [("kannel", BreakerState.OPEN)]
    assert observed.attempts.count(("kannel", "open")) == 2
    assert gateway.breaker_states() == {"kannel": BreakerState.OPEN, "smpp": BreakerState.CLOSED}


async def test_a_refused_number_does_not_count_against_the_provider():
    """Refused numbers, however many, leave the breaker closed: they say nothing of the provider."""
    first, second = Scripted(*["bad_number"] * 4), Scripted()
    gateway = _gateway(first, second, Sleeps(), Observed(), failures=2)
    for _ in range(4):
        await gateway.send(MESSAGE)
    assert gateway.breaker_states()["kannel"] is BreakerState.CLOSED


async def test_when_every_breaker_is_open_the_message_fails_with_the_fault_that_opened_them():
    """Both providers' breakers open: BreakerOpen, its reason the fault that opened them; neither is asked."""
    first, second = Scripted(*["refused"] * 2), Scripted(*["error"] * 2)
    gateway = _gateway(first, second, Sleeps(), Observed(), failures=2)
    for _ in range(2):
        with pytest.raises(DeliveryFailed):
            await gateway.send(MESSAGE)
    with pytest.raises(BreakerOpen) as caught:
        await gateway.send(MESSAGE)
    assert (caught.value.reason, first.asked, second.asked) == ("error", 2, 2)


@pytest.mark.parametrize("fault", ["timeout", "lost", "partial"])
async def test_breakers_opened_by_answers_that_never_came_do_not_say_so_of_a_message_they_held(fault):
    """Breakers opened by timeouts (a fault after which a provider may have taken the message): a message
    they hold back was taken by nobody, so its failure is `unavailable`, never `unconfirmed` (0096)."""
    first, second = Scripted(*[fault] * 2), Scripted(*[fault] * 2)
    gateway = _gateway(first, second, Sleeps(), Observed(), failures=2)
    for _ in range(2):
        with pytest.raises(DeliveryFailed) as tried:
            await gateway.send(MESSAGE)
        assert tried.value.reason == fault
    with pytest.raises(BreakerOpen) as caught:
        await gateway.send(MESSAGE)
    assert (caught.value.reason, first.asked, second.asked) == ("unavailable", 2, 2)


async def test_a_provider_that_may_have_taken_the_message_names_its_failure_over_the_next_ones():
    """The first provider timed out, the next was unreachable: the message's failure is the timeout, so
    that its dead letter says the phone may have got it (decision 0096); the last word used to hide it."""
    first, second = Scripted("timeout"), Scripted(*["unreachable"] * 3)
    gateway = _gateway(first, second, Sleeps(), Observed())
    with pytest.raises(DeliveryFailed) as caught:
        await gateway.send(MESSAGE)
    assert (caught.value.reason, first.asked, second.asked) == ("timeout", 1, 3)


async def test_a_cancelled_half_open_trial_frees_the_breaker():
    """A trial cancelled mid-send (the caller's deadline) does not leave the breaker waiting forever."""
    gate = asyncio.Event()

    class Hanging(Scripted):
        async def send(self, message: SmsMessage) -> SentSms:
            self.asked += 1
            if self.asked <= 2:
                raise DeliveryFailed("scripted", "timeout")
            if self.asked == 3:
                await gate.wait()
            return SentSms(f"ok-{self.asked}", FixedClock().now())

    ticks = [0.0]
    first = Hanging()
    reliability = Reliability(breaker=BreakerSettings(failures=2, open_seconds=30), sleep=Sleeps())
    gateway = FailoverSmsGateway([Provider("kannel", first), Provider("smpp", Scripted())], reliability)
    gateway._breakers["kannel"]._monotonic = lambda: ticks[0]
    for _ in range(2):
        await gateway.send(MESSAGE)
    ticks[0] = 31.0
    trial = asyncio.create_task(gateway.send(MESSAGE))
    await asyncio.sleep(0)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    sent = await gateway.send(MESSAGE)
    assert (sent.provider_ref, gateway.breaker_states()["kannel"]) == ("ok-4", BreakerState.CLOSED)


async def test_every_providers_final_word_is_a_refusal_no_later_try_would_change():
    """Both providers refuse the number or the text: DeliveryRefused (the outbox dead-letters it at once)."""
    gateway = _gateway(Scripted("bad_number"), Scripted("refused"), Sleeps(), Observed())
    with pytest.raises(DeliveryRefused) as caught:
        await gateway.send(MESSAGE)
    assert caught.value.reason == "refused"


async def test_a_final_word_after_a_fault_is_not_a_refusal():
    """One provider down, the other refusing the number: DeliveryFailed, not DeliveryRefused (the first
    provider may take it on a later try)."""
    gateway = _gateway(Scripted(*["unreachable"] * 3), Scripted("bad_number"), Sleeps(), Observed())
    with pytest.raises(DeliveryFailed) as caught:
        await gateway.send(MESSAGE)
    assert not isinstance(caught.value, DeliveryRefused)


async def test_throttles_do_not_open_the_breaker():
    """A provider throttling a burst (decision 0125): retried with backoff, never skipped for it."""
    first, second = Scripted(*["throttled"] * 9), Scripted()
    gateway = _gateway(first, second, Sleeps(), Observed(), failures=2)
    for _ in range(3):
        await gateway.send(MESSAGE)
    assert first.asked == 9
    assert gateway.breaker_states()["kannel"] is BreakerState.CLOSED

"""The SMS watch logs failures at most once a minute per reason, counting the rest, and tells health."""

from __future__ import annotations

import logging

import pytest

from sesame.clients.sms_breaker import BreakerSettings, BreakerState, CircuitBreaker
from sesame.server.domain.errors import DeliveryFailed
from sesame.server.sms_watch import SmsWatch


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sesame.sms" and r.levelno == logging.WARNING]


def test_one_warning_per_reason_per_window(caplog: pytest.LogCaptureFixture) -> None:
    """Five failures of one reason within the window give one WARNING; another reason gets its own."""
    watch = SmsWatch("kannel", every=60, monotonic=Ticks())
    with caplog.at_level(logging.WARNING, logger="sesame.sms"):
        for _ in range(5):
            watch.failed(DeliveryFailed("Kannel is unreachable", "unreachable"))
        watch.failed(DeliveryFailed("Kannel did not answer in time", "timeout"))
    logged = _warnings(caplog)
    assert len(logged) == 2
    assert "unreachable" in logged[0]
    assert "timeout" in logged[1]


def test_the_next_warning_counts_those_held_back(caplog: pytest.LogCaptureFixture) -> None:
    """After the window, the next WARNING says how many failures were not logged."""
    ticks = Ticks()
    watch = SmsWatch("kannel", every=60, monotonic=ticks)
    with caplog.at_level(logging.WARNING, logger="sesame.sms"):
        for _ in range(4):
            watch.failed(DeliveryFailed("Kannel is unreachable", "unreachable"))
        ticks.now += 60
        watch.failed(DeliveryFailed("Kannel is unreachable", "unreachable"))
    logged = _warnings(caplog)
    assert len(logged) == 2
    assert "; 3 more such failures were not logged in the last 60 s" in logged[1]
    # The first line held none back, and says nothing of it ("0 more such failures" read as a count).
    assert "more such failures" not in logged[0]


def test_health_follows_the_last_send() -> None:
    """Healthy at first, not after a failure, healthy again after the next successful send."""
    watch = SmsWatch("console", monotonic=Ticks())
    assert watch.healthy()
    watch.failed(DeliveryFailed("console SMS file not writable: IsADirectoryError"))
    assert not watch.healthy()
    watch.sent()
    assert watch.healthy()


def test_health_is_degraded_while_every_breaker_is_open() -> None:
    """One breaker open of two: healthy; both open: degraded; one closes again: healthy."""
    watch = SmsWatch("kannel,smpp", monotonic=Ticks(), providers=("kannel", "smpp"))
    watch.breaker_changed("kannel", BreakerState.OPEN)
    assert watch.healthy()
    watch.breaker_changed("smpp", BreakerState.OPEN)
    assert not watch.healthy()
    watch.breaker_changed("smpp", BreakerState.HALF_OPEN)
    assert watch.healthy()


def test_breaker_changes_are_logged_at_most_once_a_window_per_provider(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Open, half-open, open within a minute: one line; the next after the window counts the two held back."""
    ticks = Ticks()
    watch = SmsWatch("kannel", every=60, monotonic=ticks, providers=("kannel",))
    with caplog.at_level(logging.INFO, logger="sesame.sms"):
        for state in (BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN):
            watch.breaker_changed("kannel", state)
        ticks.now += 60
        watch.breaker_changed("kannel", BreakerState.HALF_OPEN)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "sesame.sms"]
    assert [level for level, _ in logged] == [logging.WARNING, logging.INFO]
    assert "breaker open" in logged[0][1]
    assert "half_open; 2 more changes" in logged[1][1]


def test_health_is_degraded_while_every_provider_is_unbound_or_open() -> None:
    """An SMPP provider whose last bind failed is held (decision 0122): alone, the gateway reads degraded
    until it binds; beside a provider that keeps no session, not, until that one's breaker opens too."""
    alone = SmsWatch("smpp", providers=("smpp",))
    alone.bind_changed("smpp", bound=False)
    assert not alone.healthy()
    alone.bind_changed("smpp", bound=True)
    assert alone.healthy()
    both = SmsWatch("smpp,kannel", providers=("smpp", "kannel"))
    both.bind_changed("smpp", bound=False)
    assert both.healthy()
    both.breaker_changed("kannel", BreakerState.OPEN)
    assert not both.healthy()


def test_health_reads_a_breaker_past_its_open_period_half_open() -> None:
    """Found from outside: a worker whose breaker had opened, with nothing more to send, read the gateway
    down (and its breaker open) long after the period, until its next send. The health check reads the
    breakers as they stand now; past its period an open breaker is half-open, and says so."""
    ticks = Ticks()
    watch = SmsWatch("kannel", monotonic=ticks, providers=("kannel",))
    breaker = CircuitBreaker(
        "kannel", BreakerSettings(failures=1, open_seconds=30), watch.breaker_changed, ticks
    )
    watch.follow(lambda: {"kannel": breaker.state})
    breaker.failed("unreachable")
    assert not watch.healthy()
    ticks.now += 29
    assert not watch.healthy()
    ticks.now += 1
    assert watch.healthy()
    assert breaker.allow()  # the one trial
    assert not breaker.allow()

"""The circuit breaker: closed, open after N provider faults in a row, one trial at a time half-open."""

from __future__ import annotations

from sesame.clients.sms_breaker import BreakerSettings, BreakerState, CircuitBreaker


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(ticks: Ticks, changes: list[BreakerState]) -> CircuitBreaker:
    return CircuitBreaker(
        "kannel", BreakerSettings(failures=3, open_seconds=30), lambda _, state: changes.append(state), ticks
    )


def test_it_opens_after_the_threshold_of_faults_in_a_row() -> None:
    """Three faults in a row open it; then it lets no attempt through."""
    changes: list[BreakerState] = []
    breaker = _breaker(Ticks(), changes)
    for _ in range(3):
        assert breaker.allow()
        breaker.failed("timeout")
    assert (breaker.state, breaker.allow(), changes) == (BreakerState.OPEN, False, [BreakerState.OPEN])


def test_a_success_resets_the_count() -> None:
    """Two faults, a success, two faults: still closed."""
    breaker = _breaker(Ticks(), [])
    for outcome in ("f", "f", "s", "f", "f"):
        breaker.allow()
        if outcome == "f":
            breaker.failed("timeout")
        else:
            breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED


def test_after_the_open_period_one_trial_goes_and_its_success_closes_it() -> None:
    """Past open_seconds, one attempt goes (half-open), a second waits; its success closes the breaker."""
    ticks, changes = Ticks(), []
    breaker = _breaker(ticks, changes)
    for _ in range(3):
        breaker.failed("timeout")
    ticks.now += 30
    assert breaker.allow()
    assert not breaker.allow()
    breaker.succeeded()
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert breaker.allow()


def test_a_failed_trial_opens_it_for_another_period() -> None:
    """The half-open trial fails: open again, from that instant."""
    ticks, changes = Ticks(), []
    breaker = _breaker(ticks, changes)
    for _ in range(3):
        breaker.failed("timeout")
    ticks.now += 30
    assert breaker.allow()
    breaker.failed("timeout")
    ticks.now += 29
    assert (breaker.state, breaker.allow()) == (BreakerState.OPEN, False)
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN]


def test_a_trial_with_no_news_of_the_provider_frees_the_next_trial() -> None:
    """A trial the provider answered with a refusal of the message (released) lets the next one try."""
    ticks = Ticks()
    breaker = _breaker(ticks, [])
    for _ in range(3):
        breaker.failed("timeout")
    ticks.now += 30
    assert breaker.allow()
    breaker.released()
    assert (breaker.state, breaker.allow()) == (BreakerState.HALF_OPEN, True)


def test_past_the_open_period_it_reads_half_open_unasked() -> None:
    """Read, not asked for an attempt, past its period: half-open, and its watchers hear of it once."""
    ticks, changes = Ticks(), []
    breaker = _breaker(ticks, changes)
    for _ in range(3):
        breaker.failed("timeout")
    ticks.now += 30
    assert (breaker.state, breaker.state) == (BreakerState.HALF_OPEN, BreakerState.HALF_OPEN)
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN]
    assert breaker.allow()

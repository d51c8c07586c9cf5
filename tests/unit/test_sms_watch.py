"""The SMS watch logs failures at most once a minute per reason, counting the rest, and tells health."""

from __future__ import annotations

import logging

import pytest

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
    assert "; 3 more such failures" in logged[1]


def test_health_follows_the_last_send() -> None:
    """Healthy at first, not after a failure, healthy again after the next successful send."""
    watch = SmsWatch("console", monotonic=Ticks())
    assert watch.healthy()
    watch.failed(DeliveryFailed("console SMS file not writable: IsADirectoryError"))
    assert not watch.healthy()
    watch.sent()
    assert watch.healthy()

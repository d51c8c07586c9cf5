"""A clock the test moves by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FixedClock:
    """Returns the same instant until told to advance."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


class ShiftedClock:
    """The real UTC time, moved forward by hand: for a real server, whose Redis purges by the wall clock."""

    def __init__(self) -> None:
        self._shift = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._shift

    def advance(self, delta: timedelta) -> None:
        self._shift += delta

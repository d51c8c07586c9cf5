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
    """The real UTC time, moved by hand: for a real server, whose Redis purges by the wall clock.

    `advance` is time passing for the whole deployment: the server's clock and the reference its clock watch
    compares it with (`ShiftedReference`) move together. `skew` moves this host's clock alone: it is off the
    store's (decision 0104).
    """

    def __init__(self) -> None:
        self._shift = timedelta()
        self._skew = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._shift + self._skew

    def advance(self, delta: timedelta) -> None:
        self._shift += delta

    def skew(self, delta: timedelta) -> None:
        self._skew += delta

    @property
    def shift(self) -> timedelta:
        """How far time was advanced for everyone (not this host's skew)."""
        return self._shift

"""`LogQuota`: at most one log line per key in a window, the next one counting those held back.

A failure that repeats (a send refused, a forged report, an SMSC refusing the bind) is worth its first line
and then a count: a line each time drowned the log and its alerts. Shared by the SMS watch, the delivery
report listener and the SMPP gateway, which log with their own words around `held_back`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class LogQuota(Generic[K]):
    """When each key's line was last logged, and how many were held back since."""

    def __init__(
        self, every: float, monotonic: Callable[[], float] = time.monotonic, bound: int | None = None
    ) -> None:
        """One line per key in `every` seconds of `monotonic`; at most `bound` keys remembered, the one
        first remembered forgotten first (its next line is logged as a first)."""
        self.every = every
        self._monotonic = monotonic
        self._bound = bound
        self._last: dict[K, tuple[float, int]] = {}  # key -> (logged at, held back since)

    def admit(self, key: K) -> int | None:
        """None: hold this line back (it is counted); else log it: the count of lines held back for `key`
        since its last line (0 for the first)."""
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.every:
            self._last[key] = (last[0], last[1] + 1)
            return None
        self._last[key] = (now, 0)
        if self._bound is not None and len(self._last) > self._bound:
            del self._last[next(iter(self._last))]
        return 0 if last is None else last[1]

    def clear(self) -> None:
        """Forget every key: the next line of each is logged as a first."""
        self._last.clear()

    def held_back(self, count: int, what: str) -> str:
        """The end of a line that follows `count` held back (nothing when none was: the first line)."""
        return f"; {count} more {what} were not logged in the last {self.every:.0f} s" if count else ""


class LineCeiling(Generic[K]):
    """At most `most` lines per key in each window of `every` seconds, whatever else admitted them: a quota
    keyed by something a caller multiplies (a challenge id) still bounds the lines a minute. The first line
    of a later window counts those held back."""

    def __init__(self, most: int, every: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.most = most
        self.every = every
        self._monotonic = monotonic
        self._windows: dict[K, tuple[float, int, int]] = {}  # key -> (window's start, said, held back)

    def admit(self, key: K) -> int | None:
        """None: hold this line back (it is counted); else log it: the count of lines held back for `key`
        since its last line (0 when none was)."""
        now = self._monotonic()
        start, said, held = self._windows.get(key, (now, 0, 0))
        if now - start >= self.every:
            start, said = now, 0
        if said >= self.most:
            self._windows[key] = (start, said, held + 1)
            return None
        self._windows[key] = (start, said + 1, 0)
        return held

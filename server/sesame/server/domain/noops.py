"""How far back-office calls that change nothing may grow the store (decisions 0054, 0058).

A suspension of a suspended user, an unblock with nothing to lift, a refused change: anyone allowed may
repeat them with new request ids. The store journals a user's first few of each hour and counts the rest,
and remembers their request ids (a retry answered as before) for a bounded time, the latest few only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class NoopLimits:
    """Settings (`SESAME_NOOPS_*`), validated at boot; the store passes them to its scripts."""

    journaled_per_hour: int = 20  # a user's first no-ops of its hour are journaled, later ones counted
    ids_kept: int = 64  # request ids of no-ops remembered per user, at most ...
    ids_for: timedelta = timedelta(hours=24)  # ... and for at most this long (docs/api.md)


NOOP_DEFAULTS = NoopLimits()  # the defaults, one frozen value shared by every store that is given none

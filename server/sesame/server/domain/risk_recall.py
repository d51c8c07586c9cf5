"""What this worker last read of each user's risk memory, with its version (decision 0032).

Start decides on it and hands the version to its one step, which opens only if the memory is still that one
(else answers it as it is now, and Start decides again): a recent copy saves the read, never replaces it.
Bounded: the least recently used users are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sesame.server.domain.risk_signals import UserRisk

DEFAULT_USERS = 4096  # a user's memory is a few KB (at most ~310 fingerprints and instants)


class RiskRecall:
    """The last read of each of the most recently seen users' risk memory, in this process."""

    def __init__(self, users: int = DEFAULT_USERS) -> None:
        self._users = users
        self._kept: OrderedDict[str, UserRisk] = OrderedDict()

    def recalled(self, user_id: str) -> UserRisk | None:
        """The last read of the user's memory, if kept (possibly outdated: the step checks its version)."""
        found = self._kept.get(user_id)
        if found is not None:
            self._kept.move_to_end(user_id)
        return found

    def keep(self, found: UserRisk) -> None:
        """Keep a versioned read of the user's memory, forgetting the least recent users beyond the bound."""
        if not found.version or self._users == 0:
            return
        self._kept[found.user.user_id] = found
        self._kept.move_to_end(found.user.user_id)
        while len(self._kept) > self._users:
            self._kept.popitem(last=False)

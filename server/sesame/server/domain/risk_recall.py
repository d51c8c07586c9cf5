"""The secure number this worker last saw for each user, for the operator's SIM-swap check (decision 0045).

Start asks the operator about it before its one step, which confirms it is the stored number (else answers
the stored one, and Start asks again): a recent copy saves a read, never replaces it. Bounded: the least
recently used users are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_USERS = 4096  # a number each


class RiskRecall:
    """The last seen secure number of each of the most recently seen users, in this process."""

    def __init__(self, users: int = DEFAULT_USERS) -> None:
        self._users = users
        self._kept: OrderedDict[str, str] = OrderedDict()

    def recalled(self, user_id: str) -> str | None:
        """The user's last seen secure number, if kept (possibly outdated: the step checks it)."""
        number = self._kept.get(user_id)
        if number is not None:
            self._kept.move_to_end(user_id)
        return number

    def keep(self, user_id: str, number: str) -> None:
        """Keep the user's secure number, forgetting the least recent users beyond the bound."""
        if self._users == 0:
            return
        self._kept[user_id] = number
        self._kept.move_to_end(user_id)
        while len(self._kept) > self._users:
            self._kept.popitem(last=False)

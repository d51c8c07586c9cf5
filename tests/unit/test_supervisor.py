"""The restart backoff of the supervisor of the embedded redis-server."""

from __future__ import annotations

from sesame.server.supervisor import Backoff


def test_backoff_doubles_up_to_its_cap() -> None:
    """Failed restarts in a row wait 0.5, 1, 2, 4, 8 s, then never more than the 10 s cap."""
    backoff = Backoff(first=0.5, cap=10.0)
    assert [backoff.delay(failures) for failures in range(1, 9)] == [0.5, 1, 2, 4, 8, 10, 10, 10]

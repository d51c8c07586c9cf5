"""`LogQuota`: one line per key in a window, the next counting those held back (decision 0117)."""

from __future__ import annotations

from sesame.server.domain.log_quota import LineCeiling, LogQuota


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_key_in_a_window_then_the_count() -> None:
    ticks = Ticks()
    quota: LogQuota[str] = LogQuota(60, ticks)
    assert quota.admit("a") == 0
    assert quota.admit("a") is None
    assert quota.admit("b") == 0  # another key is logged at once
    assert quota.admit("a") is None
    ticks.now += 60
    held_back = quota.admit("a")
    assert held_back == 2
    assert quota.held_back(held_back, "such") == "; 2 more such were not logged in the last 60 s"
    assert quota.held_back(0, "such") == ""


def test_cleared_the_next_line_is_a_first() -> None:
    quota: LogQuota[str] = LogQuota(60, Ticks())
    assert quota.admit("a") == 0
    assert quota.admit("a") is None
    quota.clear()
    assert quota.admit("a") == 0


def test_a_bounded_quota_forgets_its_oldest_key() -> None:
    """Keyed by something unbounded (a challenge id), the quota keeps `bound` keys: the first one it
    remembered is forgotten first, and its next line is logged as a first."""
    quota: LogQuota[str] = LogQuota(60, Ticks(), bound=2)
    for key in ("a", "b"):
        assert quota.admit(key) == 0
    assert quota.admit("a") is None
    assert quota.admit("c") == 0  # "a" forgotten
    assert quota.admit("b") is None
    assert quota.admit("a") == 0


def test_a_ceiling_bounds_the_lines_a_window_then_counts_those_held_back() -> None:
    ticks = Ticks()
    ceiling: LineCeiling[str] = LineCeiling(2, 60, ticks)
    assert [ceiling.admit("r") for _ in range(5)] == [0, 0, None, None, None]
    assert ceiling.admit("s") == 0  # another key has its own
    ticks.now += 60
    assert ceiling.admit("r") == 3
    assert ceiling.admit("r") == 0

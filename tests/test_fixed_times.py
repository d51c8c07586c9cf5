"""No fixed instant in a test that reaches Redis (decision 0058).

Redis expires keys by its own wall clock: a fixed date handed to a Redis-backed step is a time bomb, as the
risk memory contract's 2026-11-30 was (it failed from 2026-12-01, when Redis purged what the test had just
written). A test that reaches Redis takes the present (`datetime.now`, `ShiftedClock`); fixed clocks
(`FixedClock`, a `datetime(2026, ...)`) are for pure logic over the fakes, in tests/unit. A line that names a
fixed instant on purpose, which no Redis step reads as a time, says why in a `# fixed time:` comment on it or
on the line before.

The check reads the sources as text: it runs nothing and cannot flake.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
# A datetime built from a year, a fixed clock, a unix time in ms (2017-2033), an ISO timestamp.
_FIXED = re.compile(
    r"datetime\(\s*\d{4}\s*,|FixedClock\(|\b1[5-9]\d{11}\b|(?<!\d)\d{4}-\d\d-\d\d[T ]\d\d:\d\d"
)
_WHY = "# fixed time:"
_PURE = ("tests/unit/", "tests/fakes/", "tests/vectors/", "tests/test_fixed_times.py")  # and this check


def _reaches_redis(relative: str, text: str) -> bool:
    """Every e2e test runs the real server (and its Redis); elsewhere, a module that names Redis."""
    return relative.startswith("tests/e2e/") or "redis" in text.lower()


def fixed_times(relative: str, text: str) -> list[str]:
    """The lines of a module that name a fixed instant without saying why, as `path:line: text`."""
    if relative.startswith(_PURE) or not _reaches_redis(relative, text):
        return []
    lines = text.splitlines()
    return [
        f"{relative}:{n}: {line.strip()}"
        for n, line in enumerate(lines, 1)
        if _FIXED.search(line) and _WHY not in line and (n < 2 or _WHY not in lines[n - 2])
    ]


def test_no_test_that_reaches_redis_names_a_fixed_instant() -> None:
    """tests/ and bench/ outside the pure unit tests: the present, or a `# fixed time:` reason."""
    found = [
        hit
        for top in ("tests", "bench")
        for path in sorted((ROOT / top).rglob("*.py"))
        for hit in fixed_times(path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_check_finds_the_time_bomb_of_stop_9() -> None:
    """The line that failed CI (tests/contracts/test_risk_memory_contract.py before fd0c20d) is found; the
    present, a fixed clock in a unit test and a line that says why are not."""
    module = "tests/contracts/test_risk_memory_contract.py"
    bomb = "import redis\nNOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)\n"
    assert fixed_times(module, bomb) == [f"{module}:2: NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)"]
    assert fixed_times(module, "import redis\nNOW = datetime.now(UTC)\n") == []
    assert fixed_times("tests/unit/test_x.py", bomb) == []
    assert fixed_times(module, f"import redis\n{_WHY} a label\nV = '2026-12-01T00:00:00Z'\n") == []
    assert fixed_times("tests/e2e/test_x.py", "clock = FixedClock()\n") == [
        "tests/e2e/test_x.py:1: clock = FixedClock()"
    ]

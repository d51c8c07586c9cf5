"""`_journal_hourly.lua` in memory: entries a caller can repeat at will (a risk denial, a user's or a client's
no-op), journaled for the first few of each hour, then counted (decisions 0050, 0054, 0100)."""

from __future__ import annotations

from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
# Per user or client: the start of its hour, the entries counted in it, those counted and not journaled.
Windows = dict[str, tuple[datetime, int, int]]


def journaled_hourly(windows: Windows, key: str, per_hour: int, at: datetime) -> dict[str, str] | None:
    """Count one entry of `key` at `at`: None when its hour already journaled `per_hour` (only counted), else
    the fields the journaled entry carries (`unjournaled_before`, the count of those not journaled since the
    last one journaled, when there are some)."""
    since, count, unjournaled = windows.get(key, (at, 0, 0))
    if at - since >= HOUR:
        since, count = at, 0
    if count + 1 > per_hour:
        windows[key] = (since, count + 1, unjournaled + 1)
        return None
    windows[key] = (since, count + 1, 0)
    return {"unjournaled_before": str(unjournaled)} if unjournaled else {}

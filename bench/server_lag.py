"""The server's own event-loop lag over a phase, from its `sesame_event_loop_lag_seconds` histogram.

Each worker's loop fires a timer every 50 ms and records how late it came (sesame.server.loop_lag). The
scrape sums the workers (multiprocess metrics), so a phase's figures are the difference of two scrapes: how
many ticks, and how many came later than each bucket's bound. A tick late by 30 ms is 30 ms every call in
flight on that worker waited for nothing of its own (decision 0052). Few late ticks beside a long tail of the
RPCs' latencies says the tail is elsewhere: calls waiting for a core, on a machine the load client shares
(decision 0067).
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

_BUCKET = re.compile(
    r'^sesame_event_loop_lag_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\}\s+(\S+)$', re.MULTILINE
)


@dataclass(frozen=True, slots=True)
class LagCounts:
    """Cumulative tick counts by upper bound (seconds; +Inf last), summed over the workers."""

    buckets: tuple[tuple[float, float], ...]

    @classmethod
    def scrape(cls, address: str, timeout: float = 5.0) -> LagCounts:
        """Read them from the metrics endpoint at `address` (host:port)."""
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as answer:
            return cls.parse(answer.read().decode())

    @classmethod
    def parse(cls, text: str) -> LagCounts:
        """From Prometheus's text format (every label set of the histogram summed by bound)."""
        summed: dict[float, float] = {}
        for bound, count in _BUCKET.findall(text):
            summed[float(bound)] = summed.get(float(bound), 0.0) + float(count)
        return cls(tuple(sorted(summed.items())))

    def since(self, before: LagCounts) -> dict[str, object]:
        """The phase between two scrapes: ticks, and the share of them later than 10, 25 and 50 ms."""
        earlier = dict(before.buckets)
        counts = [(bound, count - earlier.get(bound, 0.0)) for bound, count in self.buckets]
        ticks = counts[-1][1] if counts else 0.0

        def later_than(seconds: float) -> float:
            within = next((count for bound, count in counts if bound >= seconds), ticks)
            return round(100 * (ticks - within) / ticks, 2) if ticks else 0.0

        return {
            "ticks": int(ticks),
            "over_10ms_pct": later_than(0.010),
            "over_25ms_pct": later_than(0.025),
            "over_50ms_pct": later_than(0.050),
        }

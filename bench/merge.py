"""One phase's figures from several load client processes (decision 0059): counts and rates added up,
latencies summarised from every process's samples together.

Each client process runs its share of the phase on its own event loop and sends back what it measured, raw:
the operations it did, the latency of every RPC, its errors, and its own loop's lags. A percentile of the
whole is then taken over the merged samples: an average of the processes' percentiles would not be one (two
processes with p99s of 5 and 50 ms do not have a p99 of 27.5 ms together).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.driver import Latency


@dataclass(frozen=True, slots=True)
class Part:
    """What one client process measured over one phase (its samples in seconds)."""

    pid: int
    ops: int
    failed: int
    seconds: float
    stopped_by: str
    skipped: int = 0
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)

    @staticmethod
    def of(answer: dict[str, Any]) -> Part:
        """A client process's answer to a phase, as it sent it (JSON)."""
        return Part(
            pid=int(answer["pid"]),
            ops=int(answer["ops"]),
            failed=int(answer["failed"]),
            seconds=float(answer["seconds"]),
            stopped_by=str(answer["stopped_by"]),
            skipped=int(answer.get("skipped", 0)),
            samples={name: [float(s) for s in values] for name, values in answer.get("samples", {}).items()},
            errors={name: int(n) for name, n in answer.get("errors", {}).items()},
            lags=[float(s) for s in answer.get("lags", [])],
        )


def shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` shares that differ by at most one and add up to `total`."""
    if parts < 1:
        raise ValueError("at least one part")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def latency(pieces: list[tuple[list[float], float]]) -> Latency:
    """One RPC over every process: percentiles of all samples together, rate the sum of each process's
    count over its own wall time (`pieces`: each process's samples and seconds)."""
    merged = Latency.of([s for samples, _ in pieces for s in samples], 1.0)
    rate = sum(_rate(len(samples), seconds) for samples, seconds in pieces)
    return Latency(
        count=merged.count,
        rate_per_s=round(rate, 1),
        p50_ms=merged.p50_ms,
        p90_ms=merged.p90_ms,
        p99_ms=merged.p99_ms,
        max_ms=merged.max_ms,
    )


def _lag(samples: list[float]) -> dict[str, float]:
    lag = Latency.of(samples, 1.0)
    return {"p50": lag.p50_ms, "p99": lag.p99_ms, "max": lag.max_ms}


def merged(parts: list[Part]) -> dict[str, Any]:
    """The phase's figures: operations, failures and skipped arrivals added up, rate the sum of the
    processes' rates, wall time the longest process's, latencies and loop lags from the merged samples;
    `clients`: each process's own operations, rate and loop lag, one entry per process, in order."""
    if not parts:
        raise ValueError("no client process answered")
    names = sorted({name for part in parts for name in part.samples})
    errors: Counter[str] = Counter()
    for part in parts:
        errors.update(part.errors)
    stopped = sorted({reason for part in parts for reason in part.stopped_by.split(",") if reason})
    return {
        "ops": sum(part.ops for part in parts),
        "failed": sum(part.failed for part in parts),
        "seconds": max(part.seconds for part in parts),
        "rate_per_s": round(sum(_rate(part.ops, part.seconds) for part in parts), 1),
        "stopped_by": ",".join(stopped),
        "skipped": sum(part.skipped for part in parts),
        "rpcs": {
            name: asdict(latency([(part.samples.get(name, []), part.seconds) for part in parts]))
            for name in names
        },
        "errors": dict(errors),
        "client_loop_lag_ms": _lag([lag for part in parts for lag in part.lags]),
        "clients": [
            {
                "pid": part.pid,
                "ops": part.ops,
                "failed": part.failed,
                "rate_per_s": round(_rate(part.ops, part.seconds), 1),
                "loop_lag_ms": _lag(part.lags),
            }
            for part in parts
        ],
    }

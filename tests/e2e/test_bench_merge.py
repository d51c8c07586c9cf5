"""`make bench`'s merge of several client processes' figures (bench/merge.py, decision 0059): pure logic.

Counts and rates add up; percentiles are those of every process's samples taken together, never an
average of the processes' percentiles; each process's own loop lag is kept beside the merged one.
"""

from __future__ import annotations

import random

import pytest

from bench.driver import Latency
from bench.merge import Part, merged, shares


def _part(
    pid: int, samples: dict[str, list[float]], ops: int | None = None, lags: list[float] | None = None
) -> Part:
    """A process's part of a 2-second phase: one operation per sample of its first RPC unless told."""
    done = len(next(iter(samples.values()), [])) if ops is None else ops
    return Part(pid, done, 0, 2.0, "duration", samples=samples, lags=lags or [])


def test_shares_add_up_and_differ_by_one_at_most() -> None:
    """Concurrency, connections, users and operations are shared out without losing or adding one."""
    for total in (1, 2, 3, 4, 16, 17, 64, 100_000):
        for parts in (1, 2, 3, 5):
            got = shares(total, parts)
            assert len(got) == parts
            assert sum(got) == total
            assert max(got) - min(got) <= 1
    with pytest.raises(ValueError, match="at least one"):
        shares(4, 0)


def test_counts_rates_and_errors_add_up() -> None:
    """Operations, failures, skipped arrivals and errors are summed; the rate is the sum of each process's
    own rate; the wall time is the longest process's; the reasons a phase stopped are all named."""
    one = Part(1, 300, 2, 2.0, "duration", 5, {"Echo": [0.001] * 600}, {"Echo:UNAVAILABLE": 2}, [0.0])
    two = Part(2, 100, 1, 2.5, "duration,exhausted", 0, {"Echo": [0.002] * 200}, {"Echo:UNAVAILABLE": 1})
    phase = merged([one, two])
    assert (phase["ops"], phase["failed"], phase["skipped"]) == (400, 3, 5)
    assert phase["rate_per_s"] == round(300 / 2.0 + 100 / 2.5, 1)
    assert phase["seconds"] == 2.5
    assert phase["stopped_by"] == "duration,exhausted"
    assert phase["errors"] == {"Echo:UNAVAILABLE": 3}
    assert [(c["pid"], c["ops"], c["failed"], c["rate_per_s"]) for c in phase["clients"]] == [
        (1, 300, 2, 150.0),
        (2, 100, 1, 40.0),
    ]
    echo = phase["rpcs"]["Echo"]
    assert echo["count"] == 800
    assert echo["rate_per_s"] == round(600 / 2.0 + 200 / 2.5, 1)


def test_percentiles_come_from_the_merged_samples_not_from_an_average() -> None:
    """Two processes, one fast and one slow: the merged p99 is the p99 of all samples together."""
    rng = random.Random(59)
    fast = [rng.uniform(0.001, 0.005) for _ in range(990)]
    slow = [rng.uniform(0.040, 0.060) for _ in range(10)]
    phase = merged([_part(1, {"StartChallenge": fast}), _part(2, {"StartChallenge": slow})])
    start = phase["rpcs"]["StartChallenge"]
    whole = Latency.of(fast + slow, 1.0)
    assert (start["p50_ms"], start["p90_ms"], start["p99_ms"], start["max_ms"]) == (
        whole.p50_ms,
        whole.p90_ms,
        whole.p99_ms,
        whole.max_ms,
    )
    # 1 % of the samples are slow: the merged p99 is the last fast one, the max the slowest.
    assert start["p99_ms"] == round(max(fast) * 1000, 3)
    assert start["max_ms"] == round(max(slow) * 1000, 3)
    averaged = (Latency.of(fast, 1.0).p99_ms + Latency.of(slow, 1.0).p99_ms) / 2
    assert start["p99_ms"] < averaged


def test_an_rpc_one_process_never_timed_is_still_merged() -> None:
    """A flow's RPCs are named by whichever processes timed them; a process with none counts zero."""
    phase = merged([_part(1, {"flow": [0.01, 0.02]}), _part(2, {}, ops=0)])
    assert phase["rpcs"]["flow"]["count"] == 2
    assert phase["rpcs"]["flow"]["rate_per_s"] == 1.0


def test_each_process_loop_lag_is_kept_and_the_merged_one_is_of_all_ticks() -> None:
    """`clients` has one entry per process, in order, with its loop lag; `client_loop_lag_ms` is of every
    tick of every process."""
    quiet = [0.0] * 199 + [0.002]
    held = [0.0] * 190 + [0.030] * 10
    phase = merged([_part(11, {}, ops=0, lags=quiet), _part(12, {}, ops=0, lags=held)])
    assert [client["pid"] for client in phase["clients"]] == [11, 12]
    assert phase["clients"][0]["loop_lag_ms"] == {"p50": 0.0, "p99": 0.0, "max": 2.0}
    assert phase["clients"][1]["loop_lag_ms"] == {"p50": 0.0, "p99": 30.0, "max": 30.0}
    whole = Latency.of(quiet + held, 1.0)
    assert phase["client_loop_lag_ms"] == {"p50": whole.p50_ms, "p99": whole.p99_ms, "max": whole.max_ms}


def test_a_phase_answer_is_read_back_from_json() -> None:
    """What a client process sends (JSON) becomes the same Part."""
    answer = {
        "pid": 7,
        "ops": 2,
        "failed": 0,
        "seconds": 1.5,
        "stopped_by": "duration",
        "skipped": 1,
        "samples": {"Echo": [0.001, 0.002, 0.003, 0.004]},
        "errors": {},
        "lags": [0.0, 0.001],
        "sms_delays": [],
    }
    part = Part.of(answer)
    assert part == Part(7, 2, 0, 1.5, "duration", 1, {"Echo": [0.001, 0.002, 0.003, 0.004]}, {}, [0.0, 0.001])
    with pytest.raises(ValueError, match="no client process"):
        merged([])

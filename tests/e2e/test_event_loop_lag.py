"""`sesame serve` publishes how late each worker's event loop runs: sesame_event_loop_lag_seconds (0052)."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.serve_process import lag_buckets, served, start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _ticks(port: int) -> float:
    """The scrape's sesame_event_loop_lag_seconds_count (the sum over the workers), 0 when absent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = re.search(r"^sesame_event_loop_lag_seconds_count (\S+)$", text, flags=re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _ticks_above(port: int, floor: float, limit: float = 20.0) -> float:
    deadline = time.monotonic() + limit
    while (ticks := _ticks(port)) <= floor and time.monotonic() < deadline:
        time.sleep(0.1)
    return ticks


def test_every_worker_measures_its_loop_and_the_scrape_sums_them(tmp_path: Path) -> None:
    """With two workers the scrape carries the loop-lag histogram, and its count keeps growing while the
    server runs idle (each worker ticks 20 times a second): the metric is live, not registered and left."""
    serving = start_serve(tmp_path / "var", settings={"SESAME_WORKERS": "2"})
    metrics_port = serving.metrics_port
    assert metrics_port is not None
    try:
        first = _ticks_above(metrics_port, 0.0)
        assert first > 0
        assert _ticks_above(metrics_port, first + 20) > first + 20
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=60)


STALL = 4.0  # seconds a worker is stopped: past 2.5 s, the last bucket the histogram had


def test_a_stalled_worker_is_measured_in_a_finite_bucket(tmp_path: Path) -> None:
    """A worker stopped STALL seconds (a paused VM, a host out of CPU): its loop ran a timer STALL late, and
    the histogram counts that in a finite bucket; it had 2.5 s for its last, and a stuck worker read 2.5 s in
    every quantile (decision 0112)."""
    with served(tmp_path / "var", {}) as serving:
        port = serving.metrics_port
        assert port is not None
        (worker,) = serving.workers()
        os.kill(worker, signal.SIGSTOP)
        try:
            time.sleep(STALL)
        finally:
            os.kill(worker, signal.SIGCONT)
        assert until(lambda: _ticks(port) > 0 and _stalled(port), 10), lag_buckets(port)


def _stalled(port: int) -> bool:
    """Whether an observation of at least STALL - 1 s is counted in a finite bucket."""
    buckets = lag_buckets(port)
    below = max((count for bound, count in buckets.items() if bound < STALL - 1), default=0.0)
    finite = [count for bound, count in buckets.items() if STALL - 1 <= bound < float("inf")]
    return bool(finite) and max(finite) > below

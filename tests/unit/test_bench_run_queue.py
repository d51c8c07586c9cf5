"""bench.procs.run_queue_seconds: how long a process's threads waited, runnable, for a core (real processes
on the real scheduler)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.procs import cpu_seconds, run_queue_seconds

# Spins for `seconds` of wall time on the one core it is allowed.
_SPIN = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    pass
"""


def test_three_processes_sharing_one_core_each_wait_twice_as_long_as_they_run() -> None:
    """Three spinners pinned to one core: each runs about a third of the time and waits for the other two
    thirds (more if other work shares that core): its wait is well above its CPU time, which a count of
    the time it ran would not be."""
    core = min(os.sched_getaffinity(0))
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN, str(core), "2.0"]) for _ in range(3)]
    time.sleep(1.6)

    read = [(run_queue_seconds(p.pid), cpu_seconds(p.pid)) for p in spinners]

    for spinner in spinners:
        assert spinner.wait(timeout=30) == 0
    for waited, ran in read:
        assert ran > 0.1, read
        assert waited > 1.5 * ran, read


def test_a_process_that_is_gone_counts_nothing() -> None:
    """Nothing to read: 0.0, as cpu_seconds answers."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(timeout=30)

    assert run_queue_seconds(ended.pid) == cpu_seconds(ended.pid) == 0.0

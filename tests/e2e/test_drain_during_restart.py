"""SIGTERM while the supervisor restarts a worker that does not come up (here stopped by SIGSTOP as it boots;
a hung network HSM or Redis does the same): the drain is not held for the whole ready timeout.

Found in a drill (decision 0130): the restart held the worker's slot for its 120 s wait for the worker's word,
and the drain waited for that slot before even telling the other worker to drain: `sesame serve` exited two
minutes after SIGTERM, the healthy worker serving meanwhile, where the grace was 2 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.serve_process import start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GRACE = 2  # seconds; the drain ends within it and the 5 s a worker has beyond it to stop


def _stop_next_worker(before: set[int], workers: Callable[[], set[int]], seconds: float) -> int | None:
    """Stop (SIGSTOP) the first worker the supervisor starts that is not in `before`, as it boots."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = workers() - before
        if started:
            pid = min(started)
            os.kill(pid, signal.SIGSTOP)
            return pid
        time.sleep(0.002)
    return None


def test_sigterm_while_a_restarted_worker_hangs_at_boot_drains_within_the_grace(tmp_path: Path) -> None:
    """A worker killed, its successor stopped as it boots, then SIGTERM: `sesame serve` exits 0 within the
    grace and its few seconds, and the hung successor does not outlive it."""
    serving = start_serve(
        tmp_path / "var", {"SESAME_WORKERS": "2", "SESAME_SHUTDOWN_GRACE_SECONDS": str(GRACE)}
    )
    hung = None
    try:
        assert until(lambda: len(serving.workers()) == 2, 30), serving.output()
        before = serving.workers()
        os.kill(min(before), signal.SIGKILL)
        hung = _stop_next_worker(before, serving.workers, 20)
        assert hung is not None, serving.output()

        serving.process.terminate()
        started = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            serving.process.wait(timeout=GRACE + 5 + 10)
        took = time.monotonic() - started

        assert serving.process.returncode == 0, f"{took:.0f} s: {serving.output()[-2000:]}"
        assert took < GRACE + 5 + 10
        assert until(lambda: not Path(f"/proc/{hung}").exists(), 10)
    finally:
        if serving.process.poll() is None:
            serving.process.kill()
            serving.process.wait()
        if hung is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung, signal.SIGKILL)

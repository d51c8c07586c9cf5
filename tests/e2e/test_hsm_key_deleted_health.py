"""The current OTP key deleted from the token while `sesame serve` runs: every worker reads NOT_SERVING within
about a second (decision 0118).

Health proved the keys by the key self-test, every 10th round (decision 0039): a worker whose self-test had
just passed went on reading SERVING for up to 10 s with every StartChallenge failing. Each round now checks
that the current keys are still there (their cached handles read), the self-test still every 10th.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from sesame.server.domain.model import KeyRef
from tests.support.dev_token import DELETE_KEY, on_dev_token
from tests.support.serve_process import ServeProcess, start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Three workers: before, the chance that each one's self-test fell within 2.5 s of the deletion was 1 in 64.
WORKERS = 3


def _not_serving(serving: ServeProcess, since: int) -> set[int]:
    """The workers that logged their key store probe failing after the first `since` characters of output."""
    said = r"health NOT_SERVING: key store \(KeyNotFound\).* worker=(\d+)"
    return {int(index) for index in re.findall(said, serving.output()[since:])}


def test_every_worker_reads_not_serving_within_two_rounds_of_the_otp_key_deleted(tmp_path: Path) -> None:
    """`sesame-otp-v1` destroyed by another process (the token still answers): each worker logs
    NOT_SERVING for the key store within 2.5 s (the health round is 1 s). Before: up to 10 s."""
    serving = start_serve(tmp_path / "var", settings={"SESAME_WORKERS": str(WORKERS)})
    try:
        deadline = time.monotonic() + 120
        while len(re.findall(r"worker \d \(pid \d+\) serving", serving.output())) < WORKERS:
            assert time.monotonic() < deadline, serving.output()[-2000:]
            time.sleep(0.1)
        time.sleep(3)  # every worker's self-test passed at least once since it served, at rounds of its own
        before = len(serving.output())
        on_dev_token(tmp_path / "var", DELETE_KEY, KeyRef.otp(1).label)
        deleted = time.monotonic()
        assert until(lambda: _not_serving(serving, before) == set(range(1, WORKERS + 1)), 2.5), (
            f"after {time.monotonic() - deleted:.1f} s only workers {sorted(_not_serving(serving, before))} "
            "read NOT_SERVING: " + serving.output()[before:][-3000:]
        )
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=60)

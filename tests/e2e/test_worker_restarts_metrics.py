"""A worker killed again and again: its counters stay in the sum, never going back; its files do not pile up.

prometheus_client keeps each dead worker's counter and histogram files and reads them all at every scrape:
a worker started again a thousand times left 2,000 files (126 MiB, 0.5 s a scrape), without end. The
supervisor folds a dead worker's values into one file per kind (decision 0114).
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.support.serve_process import served, until, wait_serving

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

KILLS = 5
CALLS = 3  # health Checks between two kills


def _checks(port: int) -> float:
    """sesame_rpc_requests_total of health's Check answered OK, as the page sums it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sesame_rpc_requests_total" and sample.labels == {"method": "Check", "code": "OK"}
    )


def _metrics_dir(worker: int) -> Path:
    """The multiprocess directory the supervisor gave `worker`."""
    for variable in Path(f"/proc/{worker}/environ").read_bytes().split(b"\0"):
        if variable.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
            return Path(variable.split(b"=", 1)[1].decode())
    raise AssertionError("no PROMETHEUS_MULTIPROC_DIR")


def test_a_worker_killed_again_and_again_keeps_its_counts_in_few_files(tmp_path: Path) -> None:
    """KILLS times: CALLS Checks, then SIGKILL the worker and wait for the next. The count never goes down and
    ends at least KILLS x CALLS; the directory holds the counters of the live worker, the sealer and the
    dead ones: three files, not one more per kill."""
    with served(tmp_path / "var", {"SESAME_HEALTH_INTERVAL_SECONDS": "1"}) as serving:
        port = serving.metrics_port
        assert port is not None
        (worker,) = serving.workers()
        directory = _metrics_dir(worker)
        seen = [_checks(port)]
        for _ in range(KILLS):
            with grpc.insecure_channel(serving.address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for _ in range(CALLS):
                    health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert until(lambda: _checks(port) >= seen[-1] + CALLS, 5)
            seen.append(_checks(port))
            os.kill(worker, signal.SIGKILL)
            killed = worker
            assert until(lambda: len(serving.workers() - {killed}) == 1, 30)  # noqa: B023 (read at once)
            (worker,) = serving.workers()
            wait_serving(serving.address, serving.process)
            seen.append(_checks(port))
        assert seen == sorted(seen)
        assert seen[-1] >= KILLS * CALLS
        counters = sorted(path.name for path in directory.glob("counter_*.db"))
        histograms = sorted(path.name for path in directory.glob("histogram_*.db"))
    assert len(counters) <= 3, counters
    assert len(histograms) <= 3, histograms

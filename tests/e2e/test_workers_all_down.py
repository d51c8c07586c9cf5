"""Every worker of a `sesame serve` dead and not coming back: /metrics says so; health comes back with them.

A worker's gauges are live ones (prometheus_client's multiprocess `live*` modes): they go with the worker.
With Redis stopped, a killed worker's new process cannot boot, and the supervisor backs off and tries again;
the page then held no `sesame_health_serving` at all, so SesameNotServing (`== 0`) could not fire while
nothing served. The supervisor now says how many of its workers serve (decision 0114).
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.serve_process import served, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _page(port: int) -> dict[str, float]:
    """Each sample of the page, by name and labels as the exposition writes them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


SERVING = "sesame_workers_serving[]"
HEALTH = "sesame_health_serving[('service', '')]"


def _redis_pid(supervisor: int) -> int:
    """The embedded redis-server the supervisor started (its child)."""
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"redis-server" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise AssertionError("no redis-server child")


def test_every_worker_dead_reads_zero_serving_and_health_comes_back(tmp_path: Path) -> None:
    """One worker: serving 1; Redis stopped and the worker killed, its new process cannot boot: serving 0
    (health's series gone with the worker); Redis back: serving 1 and health SERVING again."""
    with served(tmp_path / "var", {"SESAME_HEALTH_INTERVAL_SECONDS": "1"}) as serving:
        port = serving.metrics_port
        assert port is not None
        page = _page(port)
        assert (page.get(SERVING), page.get("sesame_workers[]"), page.get(HEALTH)) == (1, 1, 1)
        redis = _redis_pid(serving.process.pid)
        (worker,) = serving.workers()
        os.kill(redis, signal.SIGSTOP)
        try:
            os.kill(worker, signal.SIGKILL)
            assert until(lambda: worker not in serving.workers(), 10)
            assert until(lambda: HEALTH not in _page(port), 10)
            assert _page(port).get(SERVING) == 0
        finally:
            os.kill(redis, signal.SIGCONT)
        assert until(lambda: _page(port).get(SERVING) == 1 and _page(port).get(HEALTH) == 1, 90)

"""A worker that stops turning is replaced, not left holding its share of the connections (decision 0138).

Workers share the gRPC port with SO_REUSEPORT: the kernel hands each new connection to one of their sockets,
whether its process runs or not. A worker stopped (SIGSTOP, a debugger, a call into C that never returns)
still ran as far as the supervisor knew: it counted in `sesame_workers_serving`, was never restarted, and
about one connection in two waited there for ever. Each process now beats on its pipe once a second from the
loop that serves its calls; silent for `SESAME_WORKER_HANG_SECONDS` it is killed and started again.
"""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.serve_process import ServeProcess, ask_unknown_user, served, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

_HANG = 10  # SESAME_WORKER_HANG_SECONDS: twice the 5 s after which a silent worker stops counting


def _serving(port: int) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sesame_workers_serving"
    ]
    return found[0] if found else None


def _two_serving(serving: ServeProcess) -> bool:
    return len(re.findall(r"worker \d \(pid \d+\) serving", serving.output())) >= 2


def test_a_stopped_worker_stops_counting_then_is_replaced_and_every_connection_is_answered(
    tmp_path: Path,
) -> None:
    """SIGSTOP of one of two workers: within 5 s it no longer counts as serving, within the hang bound it is
    killed and a new worker serves; then every new connection is answered (before: about half waited)."""
    settings = {"SESAME_WORKERS": "2", "SESAME_WORKER_HANG_SECONDS": str(_HANG)}
    with served(tmp_path / "var", settings) as serving:
        port = serving.metrics_port
        assert port is not None
        assert until(lambda: _two_serving(serving), 120), serving.output()[-2000:]
        assert until(lambda: _serving(port) == 2, 10)
        stopped = min(serving.workers())
        os.kill(stopped, signal.SIGSTOP)
        try:
            assert until(lambda: _serving(port) == 1, _HANG - 2)
            assert stopped in serving.workers()  # not yet replaced: quiet is not hung
            assert until(lambda: stopped not in serving.workers() and len(serving.workers()) == 2, 60)
        finally:
            if stopped in serving.workers():
                os.kill(stopped, signal.SIGCONT)
        assert until(lambda: _serving(port) == 2, 120), serving.output()[-2000:]
        assert f"(pid {stopped}) gave no sign of life for" in serving.output()
        answers = [ask_unknown_user(serving.address, timeout=5) for _ in range(16)]
        assert answers == [grpc.StatusCode.NOT_FOUND] * 16


def test_a_stopped_sealer_is_replaced(tmp_path: Path) -> None:
    """The sealer process beats too: stopped, it is killed and started again."""
    settings = {"SESAME_WORKERS": "1", "SESAME_WORKER_HANG_SECONDS": str(_HANG)}
    with served(tmp_path / "var", settings) as serving:
        assert until(lambda: len(serving.sealers()) == 1, 60)
        (stopped,) = serving.sealers()
        os.kill(stopped, signal.SIGSTOP)
        try:
            assert until(lambda: len(serving.sealers()) == 1 and stopped not in serving.sealers(), 60)
        finally:
            if stopped in serving.sealers():
                os.kill(stopped, signal.SIGCONT)
        assert f"the sealer (pid {stopped}) gave no sign of life for" in serving.output()
        assert until(lambda: "sealing" in serving.output().split(f"(pid {stopped}) gave no sign")[1], 60)

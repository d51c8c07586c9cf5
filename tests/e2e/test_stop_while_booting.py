"""SIGTERM while `sesame serve`'s workers boot stops it at once (an outside audit, AD5: the supervisor waited
for a worker that never served until its two-minute start deadline, `systemctl stop` or Ctrl-C with it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.serve_process import _env, worker_pids

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Put on the workers' path: a worker's interpreter that never gets to Sésame (the supervisor's does).
_HANG_IN_WORKERS = """
import time
if b"sesame.server.worker" in open("/proc/self/cmdline", "rb").read():
    time.sleep(300)
"""


def test_sigterm_while_the_workers_boot_stops_the_server_at_once(tmp_path: Path) -> None:
    hang = tmp_path / "hang"
    hang.mkdir()
    (hang / "sitecustomize.py").write_text(_HANG_IN_WORKERS)
    env = _env(tmp_path / "var", f"127.0.0.1:{free_port()}", {"SESAME_WORKERS": "2"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hang), env.get("PYTHONPATH")]))
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serving = subprocess.Popen(
            [sys.executable, "-m", "sesame.server.cli", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while len(worker_pids(serving.pid)) < 2:
            assert serving.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        workers = worker_pids(serving.pid)
        time.sleep(1)  # booting, and hung
        asked = time.monotonic()
        serving.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=30) == 0, log.read_text()
        assert time.monotonic() - asked < 15  # not the start deadline (120 s)
        assert "stopped while the workers started" in log.read_text()
        assert "Traceback" not in log.read_text()
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes()
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()

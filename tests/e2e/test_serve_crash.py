"""A SIGKILLed `sesame serve` leaves no redis-server behind, and the next start serves on the same var/."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.serve_process import start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not), read from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name in parentheses, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_sigkill_takes_the_redis_child_along_and_the_next_start_serves(tmp_path: Path) -> None:
    """After SIGKILL of `sesame serve` its redis-server exits too, and a new start on the same var/ serves."""
    var = tmp_path / "var"
    first = start_serve(var)
    redis_pid = int((var / "redis" / "redis.pid").read_text())

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=30)

    assert _gone_within(redis_pid, 10)
    second = start_serve(var)
    second.process.terminate()
    assert second.process.wait(timeout=30) == 0, second.output()


def test_an_orphaned_redis_server_on_the_directory_is_stopped_at_start(tmp_path: Path) -> None:
    """A redis-server left on var/redis by a dead owner is stopped, and `sesame serve` starts its own."""
    data = tmp_path / "var" / "redis"
    data.mkdir(parents=True)
    redis_server = shutil.which("redis-server")
    assert redis_server is not None
    # What a run without the death signal left behind: the title names the directory, as ours do.
    orphan = subprocess.Popen(
        [
            redis_server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--dir",
            str(data),
            "--pidfile",
            str(data / "redis.pid"),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--proc-title-template",
            f"{{title}} {{listen-addr}} {data}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (data / "redis.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

        serving = start_serve(tmp_path / "var")

        assert orphan.wait(timeout=10) == 0
        assert int((data / "redis.pid").read_text()) != orphan.pid
        serving.process.terminate()
        assert serving.process.wait(timeout=30) == 0, serving.output()
        assert "left on" in serving.output()
    finally:
        orphan.kill()
        orphan.wait()

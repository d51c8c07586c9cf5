"""`sesame serve` with a small tmpfs of its own: mounted in a mount namespace of the server's (`unshare -m`),
so that nothing is mounted for the rest of the machine. A test's shell script (run as `sh -c` in the
namespace) mounts it at `$MOUNT`, talks with the test through files in `$SIGNALS` and ends by `exec`ing the
server (`$PYTHON -m sesame.server.cli serve`), which is then the process started. Needs the right to mount a
tmpfs in a new mount namespace (root, or CAP_SYS_ADMIN): the test is skipped without."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.serve_process import free_port, wait_serving


@dataclass(frozen=True, slots=True)
class TmpfsServe:
    """The server's address and process, its merged output, and the signal directory."""

    address: str
    process: subprocess.Popen[str]
    log: Path
    signals: Path


def can_mount(tmp_path: Path) -> bool:
    """Whether a tmpfs can be mounted in a new mount namespace here."""
    if shutil.which("unshare") is None:
        return False
    point = tmp_path / "probe"
    point.mkdir()
    probe = f'mount -t tmpfs -o size=64k tmpfs "{point}"'
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", probe], capture_output=True, check=False
    )
    return done.returncode == 0


@contextmanager
def serve_on_tmpfs(tmp_path: Path, script: str, settings: Mapping[str, str]) -> Iterator[TmpfsServe]:
    """Run `script` in its own mount namespace, one worker, var/ under `tmp_path`, `$MOUNT` =
    `tmp_path/full`, `$SIGNALS` = `tmp_path/signals`; `settings` (which may name paths under `$MOUNT`)
    on top. Terminated on exit."""
    if not can_mount(tmp_path):
        pytest.skip("mounting a tmpfs in a new mount namespace is not permitted here")
    mount, signals, var = tmp_path / "full", tmp_path / "signals", tmp_path / "var"
    for directory in (mount, signals):
        directory.mkdir()
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    env.update(
        MOUNT=str(mount),
        SIGNALS=str(signals),
        PYTHON=sys.executable,
        SESAME_VAR_DIR=str(var),
        SESAME_GRPC_ADDR=address,
        SESAME_METRICS_ADDR="off",
        SESAME_WORKERS="1",
    )
    env.update(settings)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_serving(address, process)
        yield TmpfsServe(address, process, log, signals)
    finally:
        process.terminate()
        process.wait(timeout=30)

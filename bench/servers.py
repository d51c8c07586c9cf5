"""The servers under test, each its own process tree: `sesame serve` with its embedded defaults, the echo, and
the design's skeleton (bench/skeleton_server.py, decision 0083).

`sesame serve` runs as an operator runs it: a private var/ (SoftHSM token, redis-server child, console SMS
file), free loopback ports, and `--workers N` when this version of serve has that option (read from its
`--help`, so the bench runs on the code before and after workers exist).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.procs import Process, command_line, listeners, tree
from sesame.server.grpc.probe import check_health

# One user and one number per caller replica would run out of the anti-pumping budgets in seconds (10 an
# hour by default): the bench's server gets the largest values the settings accept. Its connections do not
# age during a run (decision 0067): a GOAWAY mid-run would deal them to the workers again, by the kernel's
# hash, undoing their even placement (bench.spread).
BENCH_BUDGET = "1000000"
BENCH_SETTINGS = {
    "SESAME_SEND_BUDGET_USER": BENCH_BUDGET,
    "SESAME_SEND_BUDGET_PHONE": BENCH_BUDGET,
    "SESAME_SEND_CEILING_CALLER": "10000000",
    "SESAME_SEND_CEILING_GLOBAL": "10000000",
    "SESAME_MAX_CONNECTION_AGE_SECONDS": "86400",
}
_SERVE = [sys.executable, "-m", "sesame.server.cli", "serve"]


@dataclass(frozen=True, slots=True)
class Server:
    """A running server tree: where it listens, its root process, and (for Sésame) its files."""

    address: str
    root: subprocess.Popen[bytes]
    role: str
    sms_file: Path | None = None
    workers: int | None = None
    log: Path | None = None
    metrics: str | None = None  # host:port of its Prometheus endpoint (Sésame only)

    def processes(self) -> list[Process]:
        """The tree's processes now (workers and the Redis child included)."""
        return tree(self.root.pid, self.role)

    def redis_url(self) -> str:
        """The embedded redis-server's URL: from its process title (`redis-server 127.0.0.1:PORT`), or
        else from the line `sesame serve` logs when it started it."""
        for process in self.processes():
            if process.role == "redis":
                argv = " ".join(command_line(process.pid))
                match = re.search(r"--port (\d+)", argv) or re.search(r":(\d+)\b", argv)
                if match:
                    return f"redis://127.0.0.1:{match.group(1)}/0"
        logged = re.search(r"redis://[\w.:/-]+", self.log.read_text(errors="replace")) if self.log else None
        if logged:
            return logged.group(0)
        raise RuntimeError("no embedded redis-server under the Sésame process")


def free_port() -> int:
    """A loopback TCP port free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_has_workers() -> bool:
    """Whether `sesame serve` accepts `--workers` (the multi-process server of issue 6)."""
    shown = subprocess.run([*_SERVE, "--help"], capture_output=True, text=True, timeout=60, check=False)
    return "--workers" in shown.stdout


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}


def _wait_healthy(address: str, process: subprocess.Popen[bytes], log: Path, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        if check_health(address, timeout=1.0) == "SERVING":
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"the server on {address} did not become healthy; it printed:\n{tail}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def sesame(var: Path, workers: int | None) -> Iterator[Server]:
    """`sesame serve` under `var`, healthy; stopped (SIGTERM, then SIGKILL after 30 s) on exit."""
    address = f"127.0.0.1:{free_port()}"
    env = _clean_env()
    env.update(BENCH_SETTINGS, SESAME_VAR_DIR=str(var), SESAME_GRPC_ADDR=address)
    metrics = f"127.0.0.1:{free_port()}"
    env.update(SESAME_METRICS_ADDR=metrics, SESAME_DLR_ADDR=f"127.0.0.1:{free_port()}")
    argv = [*_SERVE, "--workers", str(workers)] if workers else _SERVE
    log = var.with_name(f"{var.name}-serve.log")
    # A file, not a pipe: nobody reads the server's output during the run, and a full pipe would block it.
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(address, process, log)
        # Workers that bind the port each (SO_REUSEPORT) are all listening before the first connection;
        # a server that shares one socket between its workers shows one listener, and the wait ends.
        wait_listeners(address, workers or 1, process, 30.0)
        yield Server(
            address, process, "server", sms_file=var / "sms.jsonl", workers=workers, log=log, metrics=metrics
        )
    finally:
        _stop(process)


def wait_listeners(address: str, count: int, process: subprocess.Popen[bytes], limit: float) -> int:
    """Wait (at most `limit` s) until `count` sockets listen on `address`'s port; how many do."""
    port = int(address.rsplit(":", 1)[1])
    deadline = time.monotonic() + limit
    while (found := listeners(port)) < count and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    return found


@contextlib.contextmanager
def echo(workers: int) -> Iterator[Server]:
    """The bare echo server (bench/echo_server.py) in its own process(es), every worker listening.

    Connections opened before a worker listens all go to the others: the run waits for every worker.
    """
    address = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "bench.echo_server", "--port", address.rsplit(":", 1)[1]]
    process = subprocess.Popen(
        [*argv, "--workers", str(workers)],
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if wait_listeners(address, workers, process, 60.0) < workers:
            raise RuntimeError(f"the echo server did not listen with {workers} worker(s)")
        yield Server(address, process, "echo", workers=workers)
    finally:
        _stop(process)


@contextlib.contextmanager
def skeleton(var: Path, workers: int) -> Iterator[Server]:
    """The design's skeleton (bench/skeleton_server.py) in its own process tree, its token and Redis under
    `var`, every worker listening."""
    address = f"127.0.0.1:{free_port()}"
    argv = [
        sys.executable,
        "-m",
        "bench.skeleton_server",
        "--port",
        address.rsplit(":", 1)[1],
        "--var",
        str(var),
    ]
    log = var.with_name(f"{var.name}-skeleton.log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--workers", str(workers)], env=_clean_env(), stdout=out, stderr=out
        )
    try:
        if wait_listeners(address, workers, process, 60.0) < workers:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"the skeleton server did not listen with {workers} worker(s); it printed:\n{tail}"
            )
        yield Server(address, process, "skeleton", workers=workers, log=log)
    finally:
        _stop(process)


def settled_used_memory(url: str, *, steady: float = 2.0, limit: float = 20.0) -> int:
    """`redis_used_memory` once the server's background work has caught up: the sealer and the archiver drop
    the journals of the flows before (decision 0037) seconds after they ended, which a reading taken at once
    would count against the next phase (a phase of few flows then measured a negative size per flow). Read
    until two readings `steady` seconds apart differ by less than 16 KB, or `limit` seconds have passed."""
    deadline = time.monotonic() + limit
    last = redis_used_memory(url)
    while time.monotonic() < deadline:
        time.sleep(steady)
        now = redis_used_memory(url)
        if abs(now - last) < 16 * 1024:
            return now
        last = now
    return last


def redis_used_memory(url: str) -> int:
    """INFO memory's used_memory of the Redis at `url`, in bytes."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()

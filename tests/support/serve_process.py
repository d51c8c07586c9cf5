"""`sesame serve` in a child process: embedded defaults under a private var/, free loopback ports."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.support.ports import free_port

__all__ = [
    "ServeProcess",
    "ask_unknown_user",
    "free_port",
    "journal_verify",
    "lag_buckets",
    "run_serve",
    "sealer_pids",
    "served",
    "start_serve",
    "until",
    "wait_serving",
    "worker_pids",
]


@dataclass(frozen=True, slots=True)
class ServeProcess:
    """A running `sesame serve`, the gRPC address it listens on, and the file its output goes to."""

    address: str
    process: subprocess.Popen[str]
    log: Path
    metrics_port: int | None = None  # where /metrics listens, when it was asked and logged

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace")

    def workers(self) -> set[int]:
        """The pids of the worker processes the supervisor runs now."""
        return worker_pids(self.process.pid)

    def sealers(self) -> set[int]:
        """The pid of the sealer process the supervisor runs now (none while it is restarted)."""
        return sealer_pids(self.process.pid)


def worker_pids(supervisor: int) -> set[int]:
    """The live children of `supervisor` that run `sesame.server.worker --index N` (read from /proc)."""
    return _children_running(supervisor, b"--index")


def sealer_pids(supervisor: int) -> set[int]:
    """The live children of `supervisor` that run `sesame.server.worker --sealer` (decision 0085)."""
    return _children_running(supervisor, b"--sealer")


def _children_running(supervisor: int, role: bytes) -> set[int]:
    pids = set()
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # a thread of the supervisor (a thread pool's) ended since the listing
            continue
        for child in children:
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"sesame.server.worker" in argv and role in argv:
                pids.add(int(child))
    return pids


def wait_serving(address: str, process: subprocess.Popen[str], limit: float = 60.0) -> None:
    """Wait, at most `limit` seconds, until the overall health status is SERVING."""
    deadline = time.monotonic() + limit
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"sesame serve exited with {process.returncode}")
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise AssertionError("sesame serve did not become healthy")


def _wait_booted(log: Path, process: subprocess.Popen[str], limit: float = 60.0) -> None:
    """Wait until the supervisor says it serves: every worker and the sealer process started. Health answers
    through the first worker before that, while the supervisor may still be starting the others (a test
    that counts the supervisor's threads or descriptors from then would count their start)."""
    deadline = time.monotonic() + limit
    while "serving gRPC on" not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise AssertionError(f"sesame serve exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError("sesame serve did not log that it serves")
        time.sleep(0.05)


def _env(var: Path, address: str, settings: Mapping[str, str] | None) -> dict[str, str]:
    """Our environment without any SESAME_ or SoftHSM setting, then a private var/, the ports, `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    env.update(
        SESAME_VAR_DIR=str(var),
        SESAME_GRPC_ADDR=address,
        SESAME_METRICS_ADDR="127.0.0.1:0",
        # One worker unless a test is about workers: the machine running the tests has few cores.
        SESAME_WORKERS="1",
    )
    env.update(settings or {})
    return env


def run_serve(
    var: Path, settings: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `sesame serve` expecting it to exit by itself (a refused boot); its output is merged."""
    env = _env(var, f"127.0.0.1:{free_port()}", settings)
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_dispatch(var: Path, settings: Mapping[str, str]) -> ServeProcess:
    """Start `sesame dispatch` on a `sesame serve`'s var/ and `settings` (its Redis URL among them); no port
    to wait for: its address is empty."""
    env = _env(var, f"127.0.0.1:{free_port()}", settings)
    log = var.with_name(f"{var.name}-dispatch-{free_port()}.log")
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sesame.server.cli", "dispatch"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return ServeProcess("", process, log)


def start_serve(var: Path, settings: Mapping[str, str] | None = None) -> ServeProcess:
    """Start `sesame serve` with a private var/, free ports and `settings`; return once it is healthy.

    Health is asked on SESAME_HEALTH_ADDR when `settings` sets it (the gRPC port may want a certificate).
    /metrics is asked on any port (unless `settings` says otherwise): the one it got is the result's
    `metrics_port`, read from the supervisor's line (a port picked before the server binds it may be given
    to another process meanwhile).
    """
    address = f"127.0.0.1:{free_port()}"
    env = _env(var, address, settings)
    # A file, not a pipe: nobody reads a pipe while the tests run, and a full one would block the server.
    log = var.with_name(f"{var.name}-serve.log")
    if log.exists():  # a second `sesame serve` on the same var/ (its token), as another host's would be
        log = var.with_name(f"{var.name}-serve-{free_port()}.log")
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sesame.server.cli", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_serving(env.get("SESAME_HEALTH_ADDR", address), process)
        if env.get("SESAME_LOG_LEVEL", "INFO").upper() in ("DEBUG", "INFO"):
            _wait_booted(log, process)
    except BaseException as exc:
        process.kill()
        process.wait()
        exc.add_note(f"sesame serve printed: {log.read_text(errors='replace')[-2000:]}")
        raise
    logged = re.search(r"metrics on http://[^ ]*:(\d+)/metrics", log.read_text(errors="replace"))
    return ServeProcess(address, process, log, int(logged.group(1)) if logged else None)


@contextlib.contextmanager
def served(var: Path, settings: Mapping[str, str]) -> Iterator[ServeProcess]:
    """`start_serve`, then SIGTERM when the block ends: the server must drain and exit 0."""
    serving = start_serve(var, settings=settings)
    try:
        yield serving
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    assert serving.process.returncode == 0, serving.output()


def ask_unknown_user(address: str, timeout: float = 10.0) -> grpc.StatusCode:
    """One GetUser of an unknown user on a connection of its own; the status code of the answer.

    A channel of its own: grpc shares connections between channels to one target otherwise, and SO_REUSEPORT
    spreads connections over the workers, not calls.
    """
    with grpc.insecure_channel(address, options=(("grpc.use_local_subchannel_pool", 1),)) as channel:
        try:
            # wait_for_ready, as a caller's stub with retries would: a connection the kernel handed to a
            # socket of a worker just killed is refused once (UNAVAILABLE), not answered wrongly.
            enrol_grpc.EnrollmentServiceStub(channel).GetUser(
                enrol_pb.GetUserRequest(user_id="nobody"), timeout=timeout, wait_for_ready=True
            )
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call):
                return error.code()
            raise
    return grpc.StatusCode.OK


def lag_buckets(metrics_port: int) -> dict[float, float]:
    """The cumulative counts of sesame_event_loop_lag_seconds on a `sesame serve`'s /metrics, by upper
    bound (every worker's summed)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    found = re.findall(
        r'^sesame_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, flags=re.MULTILINE
    )
    return {float(bound): float(count) for bound, count in found}


def until(check: Callable[[], bool], seconds: float) -> bool:
    """Whether `check` came true within `seconds` (looked at every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def journal_verify(archive: Path, var: Path) -> subprocess.CompletedProcess[str]:
    """`sesame journal verify --archive archive`, with the keys of the server whose var/ is `var`."""
    return sesame_on(var, "journal", "verify", "--archive", str(archive))


def sesame_on(
    var: Path, *args: str, settings: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`sesame *args` with the embedded settings on `var` (its development token) and `settings`, nothing
    else set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", *args],
        env={**env, "SESAME_VAR_DIR": str(var), **(settings or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

"""`sesame serve` in a child process: embedded defaults under a private var/, free loopback ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.ports import free_port

__all__ = ["ServeProcess", "free_port", "start_serve", "wait_serving"]


@dataclass(frozen=True, slots=True)
class ServeProcess:
    """A running `sesame serve`, the gRPC address it listens on, and the file its output goes to."""

    address: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace")


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


def start_serve(var: Path, metrics_port: int = 0, settings: Mapping[str, str] | None = None) -> ServeProcess:
    """Start `sesame serve` with a private var/, free ports and `settings`; return once it is healthy."""
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    env.update(
        SESAME_VAR_DIR=str(var), SESAME_GRPC_ADDR=address, SESAME_METRICS_ADDR=f"127.0.0.1:{metrics_port}"
    )
    env.update(settings or {})
    # A file, not a pipe: nobody reads a pipe while the tests run, and a full one would block the server.
    log = var.with_name(f"{var.name}-serve.log")
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sesame.server.cli", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_serving(address, process)
    except BaseException as exc:
        process.kill()
        process.wait()
        exc.add_note(f"sesame serve printed: {log.read_text(errors='replace')[-2000:]}")
        raise
    return ServeProcess(address, process, log)

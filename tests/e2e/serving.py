"""`sesame serve` as a child process, for the end-to-end tests that run the command itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.ports import free_port


def wait_serving(address: str, process: subprocess.Popen[str], limit: float = 60.0) -> None:
    """Return once the server's health answers SERVING; AssertionError if it exits or takes too long."""
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


def serve_process(
    var: Path, metrics_port: int = 0, settings: Mapping[str, str] | None = None
) -> tuple[str, subprocess.Popen[str]]:
    """Start `sesame serve` with a private var/ directory, free ports and `settings`; wait until healthy."""
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    env.update(
        SESAME_VAR_DIR=str(var), SESAME_GRPC_ADDR=address, SESAME_METRICS_ADDR=f"127.0.0.1:{metrics_port}"
    )
    env.update(settings or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "sesame.server.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_serving(address, process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return address, process

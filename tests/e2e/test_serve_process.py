"""`sesame serve` as an operator runs it: embedded defaults, the demo, drain on SIGTERM, a Redis crash."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import redis

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.e2e.conftest import Served
from tests.support.processes import processes_naming
from tests.support.serve_process import free_port, start_serve, wait_serving

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_demo_shows_every_outcome(served: Served) -> None:
    """`sesame demo` goes through wrong code, mismatch, void, verified and replay, and exits 0."""
    address, var = served.address, served.var
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sesame.server.cli",
            "demo",
            "--target",
            address,
            "--sms-file",
            str(var / "sms.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for outcome in ("WRONG_CODE", "OPERATION_MISMATCH", "VOIDED", "VERIFIED", "ALREADY_USED"):
        assert f"VERIFY_RESULT_{outcome}" in result.stdout
    assert "BAD" not in result.stdout


def test_metrics_endpoint_counts_calls_without_personal_data(served: Served) -> None:
    """After an enrolment, /metrics counts the call by method and status, and shows no phone or user."""
    with grpc.insecure_channel(served.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(_enrolment("metered-user"), timeout=5)
    url = f"http://127.0.0.1:{served.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    counted = re.search(r'sesame_rpc_requests_total\{code="OK",method="EnrollUser"\} (\d+)', text)
    assert counted is not None
    assert int(counted.group(1)) >= 1
    assert "metered-user" not in text
    assert "612345678" not in text


def test_embedded_defaults_live_under_var(served: Served) -> None:
    """The SoftHSM token and the Redis append-only file are created under the var directory."""
    var = served.var
    assert (var / "softhsm" / "softhsm2.conf").is_file()
    assert any((var / "redis").iterdir())


def test_sigterm_drains_and_stops_the_redis_child(tmp_path: Path) -> None:
    """SIGTERM stops the server cleanly (exit 0) and takes the embedded redis-server with it."""
    var = tmp_path / "var"
    serving = start_serve(var)
    serving.process.send_signal(signal.SIGTERM)
    serving.process.wait(timeout=30)
    assert serving.process.returncode == 0, serving.output()
    assert "stopped" in serving.output()
    assert processes_naming(str(var / "redis")) == []


def test_keys_commands_manage_the_dev_token(tmp_path: Path) -> None:
    """`sesame keys init|rotate|list` create, rotate (OTP or proof) and describe non-extractable keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    env["SESAME_VAR_DIR"] = str(tmp_path / "var")

    def keys(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "sesame.server.cli", "keys", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert keys("init").split() == [
        "current",
        "OTP",
        "key:",
        "sesame-otp-v1",
        "current",
        "proof",
        "key:",
        "sesame-proof-v1",
        "current",
        "journal",
        "key:",
        "sesame-journal-v1",
    ]
    assert "sesame-otp-v2" in keys("rotate")
    assert "sesame-proof-v2" in keys("rotate", "--kind", "proof")
    assert "sesame-journal-v2" in keys("rotate", "--kind", "journal")
    listed = keys("list")
    labels = [line.split()[0] for line in listed.splitlines()]
    assert labels == [
        "sesame-otp-v1",
        "sesame-otp-v2",
        "sesame-proof-v1",
        "sesame-proof-v2",
        "sesame-journal-v1",
        "sesame-journal-v2",
    ]
    assert listed.count("extractable=False") == 6
    assert listed.count("never_extractable=True") == 6
    assert listed.count("copyable=False modifiable=False") == 6  # decision 0079


def _redis_pid(var: Path) -> int:
    """The pid the embedded redis-server wrote in its pid file."""
    return int((var / "redis" / "redis.pid").read_text())


def _listen_port(pid: int) -> int:
    """The port in the embedded redis-server's process title (`redis-server 127.0.0.1:<port> <dir>`)."""
    match = re.search(rb"127\.0\.0\.1:(\d+)", Path(f"/proc/{pid}/cmdline").read_bytes())
    assert match is not None
    return int(match.group(1))


def _answers_ping(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _wait_written(port: int) -> None:
    """Wait until Redis has written its append-only buffer to the file, where a SIGKILL cannot undo it.

    With `appendfsync everysec` Redis acknowledges a command that lands while its background fsync runs
    and writes it up to two seconds later: what a crash in that window loses is the policy's allowance,
    not what this test is about.
    """
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5, decode_responses=True)
    try:
        for _ in range(50):
            if client.info("persistence")["aof_buffer_length"] == 0:
                return
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError("the append-only buffer was not written within 2.5 s")


def _wait_redis_back(var: Path, killed: int, port: int, deadline: float) -> None:
    """Wait until the pid file names a new child and the same port answers PING (data loaded)."""
    while time.monotonic() < deadline:
        try:
            pid = _redis_pid(var)
        except (OSError, ValueError):
            pid = killed
        if pid != killed and _answers_ping(port):
            return
        time.sleep(0.1)
    raise AssertionError(f"no new redis-server answered on port {port}")


def _enrol_retrying_unavailable(
    enrol: enrol_grpc.EnrollmentServiceStub, request: enrol_pb.EnrollUserRequest
) -> None:
    """Enrol, once more after UNAVAILABLE (safe: an enrolment is idempotent).

    A pooled Redis connection opened before the kill fails once when the restart came between two health
    rounds (health stayed SERVING): the documented answer is UNAVAILABLE, retry.
    """
    try:
        enrol.EnrollUser(request, timeout=5)
    except grpc.RpcError as error:
        if not (isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.UNAVAILABLE):
            raise
        enrol.EnrollUser(request, timeout=5)


def _enrolment(user_id: str) -> enrol_pb.EnrollUserRequest:
    return enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone="+33612345678")


def test_a_killed_redis_child_is_restarted_with_its_data(tmp_path: Path) -> None:
    """Within 15 s of SIGKILL to its redis-server, serve is SERVING again, answers, and kept its users."""
    var = tmp_path / "var"
    serving = start_serve(var)
    address, process = serving.address, serving.process
    try:
        with grpc.insecure_channel(address) as channel:
            enrol = enrol_grpc.EnrollmentServiceStub(channel)
            enrol.EnrollUser(_enrolment("before"), timeout=5)
            killed = _redis_pid(var)
            port = _listen_port(killed)
            _wait_written(port)
            os.kill(killed, signal.SIGKILL)
            deadline = time.monotonic() + 15
            _wait_redis_back(var, killed, port, deadline)
            wait_serving(address, process, limit=deadline - time.monotonic())
            _enrol_retrying_unavailable(enrol, _enrolment("after"))
            assert enrol.GetUser(enrol_pb.GetUserRequest(user_id="after"), timeout=5).user.user_id == "after"
            assert (
                enrol.GetUser(enrol_pb.GetUserRequest(user_id="before"), timeout=5).user.user_id == "before"
            )
    finally:
        process.terminate()
        process.wait(timeout=30)


def _health(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", "health", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_health_command_says_serving_with_exit_zero(served: Served) -> None:
    """`sesame health` against a healthy server prints SERVING and exits 0 (a Docker HEALTHCHECK)."""
    result = _health("--target", served.address)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING")


def test_health_command_fails_for_an_unknown_service_or_a_dead_server(served: Served) -> None:
    """An unknown service and an address nobody listens on both exit 1, each with its own word."""
    unknown = _health("--target", served.address, "--service", "no.such.Service")
    assert (unknown.returncode, unknown.stdout.strip()) == (1, "SERVICE_UNKNOWN")
    dead = _health("--target", f"127.0.0.1:{free_port()}")
    assert (dead.returncode, dead.stdout.strip()) == (1, "UNREACHABLE")

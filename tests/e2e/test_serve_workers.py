"""`sesame serve --workers N`: every worker answers, a dead one is replaced, SIGTERM drains them all, the
port stays this server's alone, the scrape sums the workers, and overload is shed, not queued."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.server.grpc.call_context import REQUEST_ID_KEY
from sesame.server.port_claim import PortClaim
from tests.e2e.helpers import shed_details
from tests.support.serve_process import (
    ServeProcess,
    ask_unknown_user,
    free_port,
    run_serve,
    start_serve,
    wait_serving,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not), read from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _gone_within(pids: set[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text: str = reply.read().decode()
        return text


def _scrape_once_counted(port: int, metric: str, labels: str, expected: float) -> str:
    """A scrape in which `metric{labels}` reached `expected`, waiting a little for it.

    An aborted call's status can reach the client before the worker's interceptor has counted it.
    """
    deadline = time.monotonic() + 5
    text = _scrape(port)
    while _counted(text, metric, labels) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        text = _scrape(port)
    return text


def _per_worker(text: str) -> dict[int, float]:
    """sesame_worker_rpcs by worker pid."""
    return {
        int(pid): float(value)
        for pid, value in re.findall(r'^sesame_worker_rpcs\{pid="(\d+)"\} (\S+)$', text, re.MULTILINE)
    }


def _counted(text: str, metric: str, labels: str) -> float:
    found = re.search(rf"^{metric}\{{{labels}\}} (\S+)$", text, re.MULTILINE)
    return 0.0 if found is None else float(found.group(1))


def _two_workers(tmp_path: Path, **settings: str) -> tuple[ServeProcess, int]:
    """`sesame serve` with two workers, once both serve: health answers through the first worker while the
    second may still be starting (on a loaded machine for more than a call's deadline)."""
    serving = start_serve(tmp_path / "var", settings={"SESAME_WORKERS": "2", **settings})
    deadline = time.monotonic() + 120
    while len(re.findall(r"worker \d \(pid \d+\) serving", serving.output())) < 2:
        assert time.monotonic() < deadline, serving.output()[-2000:]
        time.sleep(0.1)
    assert serving.metrics_port is not None
    return serving, serving.metrics_port


def _stop(serving: ServeProcess) -> None:
    serving.process.terminate()
    serving.process.wait(timeout=60)


def test_calls_over_several_connections_land_on_every_worker_and_the_scrape_sums_them(
    tmp_path: Path,
) -> None:
    """With two workers, connections reach both (each counts its calls) and /metrics adds both up."""
    serving, metrics_port = _two_workers(tmp_path)
    try:
        workers = serving.workers()
        assert len(workers) == 2
        before = _per_worker(_scrape(metrics_port))

        # Health answered SERVING through one worker; the other may bind its socket a moment later, and
        # until then the kernel hands every connection to the first. Rounds of 12, at most 10 of them.
        counted = 'code="NOT_FOUND",method="GetUser"'
        answers: list[grpc.StatusCode] = []
        after: dict[int, float] = {}
        while len(answers) < 120 and not all(after.get(pid, 0.0) > before.get(pid, 0.0) for pid in workers):
            answers += [ask_unknown_user(serving.address) for _ in range(12)]
            text = _scrape_once_counted(metrics_port, "sesame_rpc_requests_total", counted, len(answers))
            after = _per_worker(text)
        assert answers == [grpc.StatusCode.NOT_FOUND] * len(answers)
        assert set(after) == workers
        assert all(after[pid] > before.get(pid, 0.0) for pid in workers)
        assert _counted(text, "sesame_rpc_requests_total", counted) == len(answers)
        assert serving.workers() == workers
        assert "starting it again" not in serving.output()  # no worker ended by itself
    finally:
        _stop(serving)


def test_a_killed_worker_is_started_again_and_the_service_keeps_answering(tmp_path: Path) -> None:
    """SIGKILL of one worker: the other answers meanwhile, and the supervisor starts a new one."""
    serving, _ = _two_workers(tmp_path)
    try:
        killed = min(serving.workers())
        os.kill(killed, signal.SIGKILL)
        assert _gone_within({killed}, 10)

        assert [ask_unknown_user(serving.address) for _ in range(8)] == [grpc.StatusCode.NOT_FOUND] * 8
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(serving.workers()) < 2 or killed in serving.workers()):
            time.sleep(0.2)
        assert len(serving.workers()) == 2
        assert killed not in serving.workers()
        wait_serving(serving.address, serving.process)
        assert f"(pid {killed}) exited" in serving.output()
    finally:
        _stop(serving)


def test_sigterm_drains_every_worker_and_exits_zero(tmp_path: Path) -> None:
    """SIGTERM: the workers drain and exit, then Redis stops, and the supervisor exits 0."""
    serving, _ = _two_workers(tmp_path)
    workers = serving.workers()
    redis_pid = int((tmp_path / "var" / "redis" / "redis.pid").read_text())

    serving.process.send_signal(signal.SIGTERM)

    assert serving.process.wait(timeout=60) == 0, serving.output()
    assert _gone_within({*workers, redis_pid}, 10)
    assert "stopped" in serving.output()


def test_sigkill_of_the_supervisor_takes_the_workers_and_redis_along(tmp_path: Path) -> None:
    """SIGKILL of `sesame serve` itself: its workers and its redis-server exit too."""
    serving, _ = _two_workers(tmp_path, SESAME_SHUTDOWN_GRACE_SECONDS="1")
    workers = serving.workers()
    redis_pid = int((tmp_path / "var" / "redis" / "redis.pid").read_text())

    serving.process.send_signal(signal.SIGKILL)
    serving.process.wait(timeout=30)

    assert _gone_within({*workers, redis_pid}, 20)


def test_every_worker_listens_on_the_delivery_report_port(tmp_path: Path) -> None:
    """With Kannel, two workers share the fixed delivery-report port: both boot, and reports are heard."""
    dlr_port = free_port()
    serving, _ = _two_workers(
        tmp_path,
        SESAME_SMS_GATEWAY="kannel",
        SESAME_KANNEL_URL=f"http://127.0.0.1:{free_port()}",
        SESAME_KANNEL_USERNAME="sesame",
        SESAME_KANNEL_PASSWORD=secrets.token_urlsafe(16),  # never used: no SMS is sent
        SESAME_DLR_ADDR=f"127.0.0.1:{dlr_port}",
        SESAME_DLR_TOKEN=secrets.token_urlsafe(32),
    )
    try:
        assert len(serving.workers()) == 2
        for _ in range(6):
            # No token: refused, by whichever worker took the connection.
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{dlr_port}/dlr/kannel", timeout=5)
            assert 400 <= refused.value.code < 500
    finally:
        _stop(serving)


def test_a_second_serve_on_the_workers_port_is_refused_in_one_line(tmp_path: Path) -> None:
    """Another `sesame serve` on a port two workers share (SO_REUSEPORT) fails with one line."""
    serving, _ = _two_workers(tmp_path)
    try:
        result = run_serve(tmp_path / "other", {"SESAME_GRPC_ADDR": serving.address, "SESAME_WORKERS": "2"})

        assert result.returncode == 2
        assert "Traceback" not in result.stdout
        assert result.stdout.splitlines()[-1] == (
            f"sesame: cannot listen on {serving.address} (SESAME_GRPC_ADDR): address already in use"
        )
    finally:
        _stop(serving)


def test_a_port_claimed_by_another_serve_still_starting_is_refused_in_one_line(tmp_path: Path) -> None:
    """A port whose lock another `sesame serve` holds (its workers not yet bound) is refused in one line."""
    port = free_port()
    with PortClaim() as other:
        other.claim(f"127.0.0.1:{port}", "SESAME_GRPC_ADDR")

        result = run_serve(tmp_path / "var", {"SESAME_GRPC_ADDR": f"127.0.0.1:{port}"})

    assert result.returncode == 2
    assert result.stdout.splitlines()[-1] == (
        f"sesame: cannot listen on 127.0.0.1:{port} (SESAME_GRPC_ADDR): address already in use "
        f"(another sesame serve holds port {port})"
    )


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ("SESAME_HEALTH_ADDR", "cannot listen on {} (SESAME_HEALTH_ADDR): address already in use"),
        ("SESAME_METRICS_ADDR", "cannot serve metrics on {} (SESAME_METRICS_ADDR): Address already in use"),
    ],
)
def test_a_taken_side_port_is_refused_naming_its_setting(tmp_path: Path, setting: str, line: str) -> None:
    """Another process listening on the health or metrics port: one line that says which setting gave it
    (four listeners a `sesame serve` opens; the address alone left the operator to guess)."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"

        result = run_serve(tmp_path / "var", {setting: address})

    assert result.returncode == 2
    assert "Traceback" not in result.stdout
    assert result.stdout.splitlines()[-1] == "sesame: " + line.format(address)


async def _flood(var: Path, address: str, calls: int, checks: int) -> tuple[list[object], list[int]]:
    """One GetUser held in flight, then `calls` GetUser and `checks` health checks, all at once.

    The held call waits on the embedded Redis, stopped (SIGSTOP) for the length of the burst: the worker is
    at its bound whatever the machine's speed, so the burst's outcome does not depend on timing.
    """
    redis_pid = int((var / "redis" / "redis.pid").read_text())
    async with grpc.aio.insecure_channel(address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):  # the connection up and the pool warm: NOT_FOUND
            await enrol.GetUser(enrol_pb.GetUserRequest(user_id="warm-up"), timeout=30, wait_for_ready=True)
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            held = asyncio.ensure_future(enrol.GetUser(enrol_pb.GetUserRequest(user_id="held"), timeout=30))
            await asyncio.sleep(0.3)  # the held call reaches the worker and waits on Redis
            asked = [
                enrol.GetUser(enrol_pb.GetUserRequest(user_id="nobody"), timeout=30) for _ in range(calls)
            ]
            probed = [health.Check(health_pb2.HealthCheckRequest(), timeout=30) for _ in range(checks)]
            answers = await asyncio.gather(*asked, return_exceptions=True)
            statuses = [reply.status for reply in await asyncio.gather(*probed)]
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        with pytest.raises(grpc.aio.AioRpcError):
            await held  # answered once Redis resumes: NOT_FOUND
    return list(answers), statuses


async def test_calls_beyond_the_bound_are_shed_with_retry_info_and_counted(tmp_path: Path) -> None:
    """With at most one call at a time and one in flight, a burst is shed (UNAVAILABLE, OVERLOADED,
    RetryInfo), counted, and health checks in the same burst are all answered."""
    serving = start_serve(tmp_path / "var", settings={"SESAME_MAX_CONCURRENT_RPCS": "1"})
    metrics_port = serving.metrics_port
    assert metrics_port is not None
    try:
        answers, health = await _flood(tmp_path / "var", serving.address, calls=60, checks=20)

        errors = [answer for answer in answers if isinstance(answer, grpc.aio.AioRpcError)]
        assert len(errors) == len(answers)  # an unknown user: NOT_FOUND, or shed
        shed = [error for error in errors if error.code() is grpc.StatusCode.UNAVAILABLE]
        assert len(shed) == 60
        assert {shed_details(error) for error in shed} == {("OVERLOADED", 1.0)}
        # Beside the status details, each shed call's own request id (decision 0075): 60 fresh ones.
        ids = {dict(error.trailing_metadata() or ()).get(REQUEST_ID_KEY) for error in shed}
        assert len(ids - {None}) == 60
        assert health == [health_pb2.HealthCheckResponse.SERVING] * 20
        unavailable = 'code="UNAVAILABLE",method="GetUser"'
        text = _scrape_once_counted(metrics_port, "sesame_rpc_requests_total", unavailable, len(shed))
        assert _counted(text, "sesame_rpc_shed_total", 'method="GetUser"') == len(shed)
        assert _counted(text, "sesame_rpc_requests_total", unavailable) == len(shed)
    finally:
        _stop(serving)

"""A failing SMS gateway is logged (rate-limited), counted by reason, and reported as degraded by health."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.sms_watch import SMS_HEALTH_SERVICE
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled
from tests.support.kannel import Kannel
from tests.support.outbox import dispatched_state, settled
from tests.support.ports import dead_port
from tests.support.serve_process import ServeProcess, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345678"
LOGIN = op_pb.Operation(login=op_pb.Login())
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _serve(tmp_path: Path, url: str, username: str, password: str) -> Iterator[tuple[ServeProcess, int]]:
    settings: Mapping[str, str] = {
        "SESAME_SMS_GATEWAY": "kannel",
        "SESAME_KANNEL_URL": url,
        "SESAME_KANNEL_USERNAME": username,
        "SESAME_KANNEL_PASSWORD": password,
        "SESAME_DLR_ADDR": "off",
    }
    serving = start_serve(tmp_path / "var", settings=settings)
    assert serving.metrics_port is not None
    yield serving, serving.metrics_port
    serving.process.terminate()
    serving.process.wait(timeout=30)


@pytest.fixture
def unreachable(tmp_path: Path) -> Iterator[tuple[ServeProcess, int]]:
    """`sesame serve` whose Kannel URL is a loopback port nobody listens on (nor is given meanwhile)."""
    with dead_port() as port:
        yield from _serve(tmp_path, f"http://127.0.0.1:{port}", "sesame", "any-password")


@pytest.fixture
def refused(kannel: Kannel, tmp_path: Path) -> Iterator[tuple[ServeProcess, int]]:
    """`sesame serve` on the session's real Kannel with a password Kannel refuses."""
    yield from _serve(tmp_path, kannel.url, kannel.username, "not-the-password")


def _start_challenges(address: str, count: int) -> list[int]:
    """Enrol a user and start `count` login challenges (each answered QUEUED); their delivery states once
    their SMS were dispatched."""
    with grpc.insecure_channel(address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone=PHONE), timeout=5
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        request = auth_pb.StartChallengeRequest(user_id="ana", operation=LOGIN)
        started = [auth.StartChallenge(request, timeout=15) for _ in range(count)]
    assert {reply.delivery_state for reply in started} == {auth_pb.DELIVERY_STATE_QUEUED}
    return [dispatched_state(address, reply.challenge_id) for reply in started]


def _failures(metrics_port: int) -> dict[str, float]:
    """Kannel's failed sends counted so far, by reason."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    counted = re.findall(r'sesame_sms_failures_total\{gateway="kannel",reason="([^"]+)"\} (\S+)', text)
    return {reason: float(value) for reason, value in counted if float(value)}


def _health_command(address: str, limit: float = 10) -> subprocess.CompletedProcess[str]:
    """`sesame health`, asked again until it reports the degraded gateway (health rounds every second)."""
    deadline = time.monotonic() + limit
    while True:
        result = subprocess.run(
            [sys.executable, "-m", "sesame.server.cli", "health", "--target", address],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if "degraded" in result.stdout or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_unreachable_gateway_is_logged_once_counted_and_degraded(
    unreachable: tuple[ServeProcess, int],
) -> None:
    """Three sends to nowhere: one WARNING, three failures counted unreachable, SERVING but degraded."""
    serving, metrics_port = unreachable

    states = _start_challenges(serving.address, 3)

    assert states == [auth_pb.DELIVERY_STATE_FAILED] * 3
    assert _failures(metrics_port) == {"unreachable": 3}, serving.output()[-3000:]
    warnings = [line for line in serving.output().splitlines() if "SMS gateway kannel failing" in line]
    assert len(warnings) == 1
    assert " WARNING " in warnings[0]
    assert "unreachable" in warnings[0]
    health = _health_command(serving.address)
    assert (health.returncode, health.stdout.strip()) == (0, "SERVING (degraded: SMS gateway failing)")
    with grpc.insecure_channel(serving.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        gateway = stub.Check(health_pb2.HealthCheckRequest(service=SMS_HEALTH_SERVICE), timeout=5).status
    assert (overall, gateway) == (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )


def test_a_refusing_kannel_is_counted_as_refused(refused: tuple[ServeProcess, int]) -> None:
    """The real Kannel refusing the account: the send is FAILED, counted as refused, and logged."""
    serving, metrics_port = refused

    assert _start_challenges(serving.address, 1) == [auth_pb.DELIVERY_STATE_FAILED]

    assert _failures(metrics_port) == {"refused": 1}, serving.output()[-3000:]
    assert "SMS gateway kannel failing: refused" in serving.output()


async def delivery_once_settled(live: Live, challenge_id: str) -> int:
    """The challenge's delivery state once the dispatcher settled its queued SMS."""
    await settled(live.store)
    reply = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    return int(reply.challenge.delivery_state)


async def _gateway_status(live: Live, wanted: int, limit: float = 10) -> int:
    """The gateway's health status, asked again until it is `wanted` (health rounds every second)."""
    stub = health_pb2_grpc.HealthStub(live.channel)
    deadline = time.monotonic() + limit
    while True:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=SMS_HEALTH_SERVICE))
        if reply.status == wanted or time.monotonic() > deadline:
            return int(reply.status)
        await asyncio.sleep(0.1)


async def test_health_reports_the_gateway_again_once_a_send_succeeds(live: Live) -> None:
    """A failed send turns the gateway NOT_SERVING (the server stays SERVING); a good send restores it."""
    user = await enrolled(live)
    live.sms_file.unlink()
    live.sms_file.mkdir()  # every append now fails, as on a full disk

    failed = await live.auth.StartChallenge(auth_pb.StartChallengeRequest(user_id=user, operation=LOGIN))

    assert await delivery_once_settled(live, failed.challenge_id) == auth_pb.DELIVERY_STATE_FAILED
    assert await _gateway_status(live, NOT_SERVING) == NOT_SERVING
    overall = await health_pb2_grpc.HealthStub(live.channel).Check(health_pb2.HealthCheckRequest())
    assert overall.status == SERVING
    sample = live.metrics.registry.get_sample_value
    assert sample("sesame_sms_failures_total", {"gateway": "console", "reason": "error"}) == 1
    live.sms_file.rmdir()
    sent = await live.auth.StartChallenge(auth_pb.StartChallengeRequest(user_id=user, operation=LOGIN))
    assert await delivery_once_settled(live, sent.challenge_id) == auth_pb.DELIVERY_STATE_SENT
    assert await _gateway_status(live, SERVING) == SERVING

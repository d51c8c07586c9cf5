"""`sesame serve` through Kannel whose link to its SMSC is down: the SMS is queued, and Sésame says so.

With no SMSC connected, smsbox answers every sendsms `202 3: Queued for later delivery`: Kannel holds the
message until a link comes back. Sésame read it as it reads `0: Accepted`: the challenge SENT, the journal
`sent`, `sesame_sms_provider_attempts_total{outcome="sent"}`, health SERVING, and no WARNING: every code of
the outage stayed in Kannel's memory while everything Sésame shows said they had gone. The send is now
journaled with `provider_queued`, counted as `queued`, logged as a (rate-limited) WARNING, and the gateway's
health reads NOT_SERVING until a send goes (decision 0124).
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from tests.support.kannel import Kannel, kannel_settings, running_kannel
from tests.support.outbox import dispatched_state
from tests.support.serve_process import ServeProcess, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345673"


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[Kannel]:
    """A Kannel of this test's own: its SMSC link is cut."""
    work = tmp_path / "kannel"
    work.mkdir()
    with running_kannel(work) as running:
        yield running


@pytest.fixture
def serving(
    kannel: Kannel, redis_server: EmbeddedRedis, redis_store: RedisState, tmp_path: Path
) -> Iterator[ServeProcess]:
    """A `sesame serve` on the test's Redis whose only provider is that Kannel."""
    serving = start_serve(
        tmp_path / "var", settings=kannel_settings(kannel, SESAME_REDIS_URL=redis_server.url)
    )
    yield serving
    serving.process.terminate()
    serving.process.wait(timeout=30)
    assert serving.process.returncode == 0, serving.output()


async def test_a_code_kannel_queues_without_an_smsc_is_told_apart(
    kannel: Kannel, serving: ServeProcess, redis_store: RedisState
) -> None:
    """The SMSC link cut, a code SMS: SENT (Kannel took it), but journaled `provider_queued`, counted as
    `queued`, one WARNING, and `sesame.SmsGateway` NOT_SERVING."""
    kannel.cut_smsc_link()
    await asyncio.sleep(0.5)
    login = op_pb.Operation(login=op_pb.Login())
    async with grpc.aio.insecure_channel(serving.address) as channel:
        await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="q", client_id="acme", secure_phone=PHONE)
        )
        started = await auth_grpc.AuthenticationServiceStub(channel).StartChallenge(
            auth_pb.StartChallengeRequest(user_id="q", operation=login)
        )
    state = await asyncio.to_thread(dispatched_state, serving.address, started.challenge_id)
    assert state == auth_pb.DELIVERY_STATE_SENT
    entries = await redis_store.journal.challenge_journal(started.challenge_id)
    (sent,) = [e for e in entries if e["event"] == "challenge.delivery" and e["outcome"] == "sent"]
    assert sent["provider_queued"] == "true"
    assert await asyncio.to_thread(_sms_health_within, serving.address, 5) == (
        health_pb2.HealthCheckResponse.NOT_SERVING
    )
    metrics = await asyncio.to_thread(_metrics, serving)
    assert re.search(
        rb'sesame_sms_provider_attempts_total\{outcome="queued",provider="kannel"\} 1\.0', metrics
    )
    assert "queuing: a provider holds the SMS with no SMSC connected" in serving.output()


def _metrics(serving: ServeProcess) -> bytes:
    url = f"http://127.0.0.1:{serving.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        return bytes(reply.read())


def _sms_health_within(address: str, seconds: float) -> int:
    """The gateway's health once it reads NOT_SERVING, or what it reads after `seconds`."""
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="sesame.SmsGateway")
        while True:
            status = int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=3).status)
            if status == health_pb2.HealthCheckResponse.NOT_SERVING or time.monotonic() > deadline:
                return status
            time.sleep(0.2)

"""A real Sésame gRPC server on 127.0.0.1 with real Redis, the SoftHSM token and the console SMS file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_store import RedisStateStore
from sesame.clients.sms_console import ConsoleSmsGateway
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.app import Gateway, SystemClock, wire
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.grpc.server import GrpcServer
from sesame.server.metrics import Metrics


@dataclass
class Live:
    """A running server and what a test needs to talk to it and to look behind it."""

    channel: grpc.aio.Channel
    auth: auth_grpc.AuthenticationServiceStub
    enrol: enrol_grpc.EnrollmentServiceStub
    sms_file: Path
    store: RedisStateStore
    metrics: Metrics


@pytest.fixture
def policy() -> ChallengePolicy:
    """The server's challenge limits: the defaults, unless a test parametrizes `policy`."""
    return ChallengePolicy()


@pytest.fixture
async def live(
    redis_store: RedisStateStore, keystore: Pkcs11KeyStore, tmp_path: Path, policy: ChallengePolicy
) -> AsyncIterator[Live]:
    """Start the server on a free loopback port, with a fresh Redis database and SMS file."""
    clock = SystemClock()
    sms_file = tmp_path / "sms.jsonl"
    sms = ConsoleSmsGateway(sms_file, clock, "development")
    # The composition root's own wiring (metered adapters), over the test session's Redis and token.
    running = wire(
        keys=keystore,
        store=redis_store,
        sms=Gateway("console", sms),
        clock=clock,
        policy=policy,
        metrics=Metrics(),
    )
    server = await GrpcServer.start(
        "127.0.0.1:0",
        challenges=running.challenges,
        enrollment=running.enrollment,
        clock=clock,
        probes=running.probes,
        health_interval=1.0,
        metrics=running.metrics,
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Live(
            channel=channel,
            auth=auth_grpc.AuthenticationServiceStub(channel),
            enrol=enrol_grpc.EnrollmentServiceStub(channel),
            sms_file=sms_file,
            store=redis_store,
            metrics=running.metrics,
        )
    finally:
        await channel.close()
        await server.stop(0)

"""Health's List, which any caller may call (health needs no grant, on the gRPC port and the probes'
listener alike): grpc's servicer leaves it unimplemented, so each call answered INTERNAL and logged an
ERROR with a traceback, as many as a caller cared to send, and counted as a server fault in the metrics that
alerts watch (decision 0057). It answers every service's status, as Check does each."""

from __future__ import annotations

import asyncio
import logging

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.server.grpc.catalogue import API_SERVICES
from tests.e2e.conftest import Live
from tests.e2e.helpers import counted

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CALLS = 200
AT_ONCE = 50


async def test_list_answers_every_status_and_logs_no_error(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """CALLS Lists: each the status Check gives of the server and of each of our services; no ERROR logged,
    none counted INTERNAL."""
    caplog.set_level(logging.INFO)
    health = health_pb2_grpc.HealthStub(live.channel)
    answers = []
    for _ in range(CALLS // AT_ONCE):
        answers += await asyncio.gather(
            *(health.List(health_pb2.HealthListRequest(), timeout=10) for _ in range(AT_ONCE))
        )
    checked = {
        service: (await health.Check(health_pb2.HealthCheckRequest(service=service))).status
        for service in ("", *API_SERVICES)
    }
    assert all(checked[service] == health_pb2.HealthCheckResponse.SERVING for service in checked)
    for answer in answers:
        listed = {service: status.status for service, status in answer.statuses.items()}
        assert {service: listed.get(service) for service in checked} == checked
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info is not None] == []
    ok = {"method": "List", "code": "OK"}
    assert await counted(live.metrics.registry, "sesame_rpc_requests_total", ok) == CALLS
    internal = {"method": "List", "code": "INTERNAL"}
    assert live.metrics.registry.get_sample_value("sesame_rpc_requests_total", internal) is None

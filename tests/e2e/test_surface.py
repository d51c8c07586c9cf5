"""What every gRPC client sees before calling our services: health and reflection."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.e2e.conftest import Live

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_health_reports_serving_per_service(live: Live) -> None:
    """grpc.health.v1 answers SERVING for the server and for each of our services."""
    stub = health_pb2_grpc.HealthStub(live.channel)
    for service in ("", "sesame.api.v1.AuthenticationService", "sesame.api.v1.EnrollmentService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_our_services(live: Live) -> None:
    """Reflection lets grpcurl-like tools discover the API."""
    stub = reflection_pb2_grpc.ServerReflectionStub(live.channel)

    async def requests():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in stub.ServerReflectionInfo(requests()):
        names = {service.name for service in reply.list_services_response.service}
        assert {"sesame.api.v1.AuthenticationService", "sesame.api.v1.EnrollmentService"} <= names
        break

"""What every gRPC client sees before calling our services: health and reflection."""

from __future__ import annotations

import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.grpc.server import MAX_MESSAGE_BYTES
from tests.e2e.conftest import Live
from tests.e2e.helpers import counted

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


async def test_calls_are_counted_by_method_and_status(live: Live) -> None:
    """A refused StartChallenge and a GetUser of nobody are counted under their status codes."""
    with pytest.raises(grpc.aio.AioRpcError):
        await live.auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="alice"))
    with pytest.raises(grpc.aio.AioRpcError):
        await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="nobody"))
    sample = live.metrics.registry.get_sample_value
    assert sample("sesame_rpc_requests_total", {"method": "StartChallenge", "code": "INVALID_ARGUMENT"}) == 1
    assert sample("sesame_rpc_requests_total", {"method": "GetUser", "code": "NOT_FOUND"}) == 1
    assert sample("sesame_rpc_duration_seconds_count", {"method": "GetUser"}) == 1


async def test_oversized_messages_are_refused_before_parsing(live: Live) -> None:
    """A request over the 64 KiB cap is RESOURCE_EXHAUSTED, without details, and never reaches a flow."""
    huge = enrol_pb.GetUserRequest(user_id="x" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.GetUser(huge)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # As docs/api.md tells it from a spent quota: gRPC's own refusal, no QuotaFailure, no request id.
    assert dict(caught.value.trailing_metadata() or ()) == {}


async def test_health_of_an_unknown_service_is_not_found_quietly(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """Health's NOT_FOUND for an unknown service passes the error interceptor untouched, with no ERROR log."""
    caplog.set_level(logging.INFO)
    stub = health_pb2_grpc.HealthStub(live.channel)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))

    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info is not None] == []
    labels = {"method": "Check", "code": "NOT_FOUND"}
    assert await counted(live.metrics.registry, "sesame_rpc_requests_total", labels) == 1

"""An undecodable request answers INVALID_ARGUMENT, logs one line without a traceback, and is counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from tests.e2e.conftest import Live

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

_FILES = (
    auth_pb.DESCRIPTOR,
    enrol_pb.DESCRIPTOR,
    evidence_pb.DESCRIPTOR,
    health_pb2.DESCRIPTOR,
    reflection_pb2.DESCRIPTOR,
)
# Field 31 with wire type 7, which does not exist: no message parses it.
_BAD_WIRE = b"\xff\x01"


def _methods() -> Iterator[MethodDescriptor]:
    for file in _FILES:
        for service in file.services_by_name.values():
            yield from service.methods


def _bad_utf8(method: MethodDescriptor) -> bytes | None:
    """The method's first string field holding bytes that are not UTF-8; None if it has no string field."""
    for field in method.input_type.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return bytes([field.number << 3 | 2, 2]) + b"\xc3\x28"
    return None


def _cases() -> Iterator[object]:
    for method in _methods():
        path = f"/{method.containing_service.full_name}/{method.name}"
        yield pytest.param(method, _BAD_WIRE, id=f"{path}:wire")
        utf8 = _bad_utf8(method)
        if utf8 is not None:
            yield pytest.param(method, utf8, id=f"{path}:utf8")


async def _call(channel: grpc.aio.Channel, method: MethodDescriptor, payload: bytes) -> grpc.StatusCode:
    """Send `payload` as the request (no serializer: the bytes go as they are) and return the status code."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            stream = channel.stream_stream(path)(iter([payload]))
            async for _ in stream:
                pass
        elif method.server_streaming:
            async for _ in channel.unary_stream(path)(payload):
                pass
        else:
            await channel.unary_unary(path)(payload)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("method", "payload"), list(_cases()))
async def test_undecodable_request_is_invalid_argument(
    live: Live, method: MethodDescriptor, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Every RPC of every service answers undecodable bytes INVALID_ARGUMENT, one WARNING, no traceback."""
    caplog.set_level(logging.INFO)

    code = await _call(live.channel, method, payload)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    refusals = [r for r in caplog.records if r.name == "sesame.grpc" and "undecodable" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.WARNING]
    assert [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR] == []


async def test_undecodable_request_is_counted(live: Live) -> None:
    """The refusal is counted in sesame_rpc_requests_total under INVALID_ARGUMENT."""
    method = auth_pb.DESCRIPTOR.services_by_name["AuthenticationService"].methods_by_name["StartChallenge"]

    assert await _call(live.channel, method, _BAD_WIRE) is grpc.StatusCode.INVALID_ARGUMENT

    # grpc.aio sends an abort's status before the interceptors' `finally` runs: the count may trail the
    # answer by a few event-loop turns (under load, enough for the client to look first).
    labels = {"method": "StartChallenge", "code": "INVALID_ARGUMENT"}
    counted = None
    for _ in range(200):
        counted = live.metrics.registry.get_sample_value("sesame_rpc_requests_total", labels)
        if counted is not None:
            break
        await asyncio.sleep(0.01)
    assert counted == 1


FLOOD = 300


async def test_a_flood_of_undecodable_requests_writes_one_warning_per_method(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """FLOOD undecodable health Checks (no certificate asks them on the probes' listener) and as many Starts:
    one WARNING for each method, every call counted; it was a WARNING per call, 300 in 0.2 s."""
    caplog.set_level(logging.INFO)
    methods = [
        health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"],
        auth_pb.DESCRIPTOR.services_by_name["AuthenticationService"].methods_by_name["StartChallenge"],
    ]
    for method in methods:
        codes = [await _call(live.channel, method, _BAD_WIRE) for _ in range(FLOOD)]
        assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}
    refusals = [r for r in caplog.records if r.name == "sesame.grpc" and "undecodable" in r.getMessage()]
    assert [r.getMessage().split(" refused")[0] for r in refusals] == [
        "rpc /grpc.health.v1.Health/Check",
        "rpc /sesame.api.v1.AuthenticationService/StartChallenge",
    ]
    for name in ("Check", "StartChallenge"):
        labels = {"method": name, "code": "INVALID_ARGUMENT"}
        for _ in range(200):
            if live.metrics.registry.get_sample_value("sesame_rpc_requests_total", labels) == FLOOD:
                break
            await asyncio.sleep(0.01)
        assert live.metrics.registry.get_sample_value("sesame_rpc_requests_total", labels) == FLOOD

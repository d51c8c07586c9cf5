"""A call's headers are bounded at one size, the same for every call (decision 0092).

Found from outside with a Node client: gRPC's own limits are a soft 8 KiB and a hard 16 KiB, and between them
it refused calls at random, so the same call with 10 KiB of metadata was answered or refused by chance.
"""

from __future__ import annotations

import urllib.request

import grpc
import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.server.grpc.server import MAX_METADATA_BYTES
from tests.e2e.conftest import Served
from tests.support.http2 import DATA, END_STREAM, drained, frame, grpc_message, long_headers, unacknowledged

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TRIES = 20


def _codes(served: Served, padding: int) -> set[tuple[grpc.StatusCode, bool]]:
    """The status codes of TRIES GetUser calls of nobody, each with `padding` bytes of metadata, and whether
    the refusal carried trailers (gRPC's refusal before any RPC ran has none: no request id, no details)."""
    codes = set()
    with grpc.insecure_channel(served.address) as channel:
        stub = enrol_grpc.EnrollmentServiceStub(channel)
        for _ in range(TRIES):
            try:
                stub.GetUser(
                    enrol_pb.GetUserRequest(user_id="nobody"), metadata=[("x-pad", "a" * padding)], timeout=10
                )
            except grpc.RpcError as refused:
                codes.add((refused.code(), bool(refused.trailing_metadata())))
    return codes


def test_metadata_under_the_bound_is_always_served(served: Served) -> None:
    """7 KiB of metadata (with gRPC's own headers, under 8 KiB): every call reaches the service."""
    assert _codes(served, 7 * 1024) == {(grpc.StatusCode.NOT_FOUND, True)}


@pytest.mark.parametrize("padding", [MAX_METADATA_BYTES, 10 * 1024, 15 * 1024])
def test_metadata_over_the_bound_is_always_refused(served: Served, padding: int) -> None:
    """Over 8 KiB: every call is RESOURCE_EXHAUSTED before any RPC runs (before, 10 KiB was a coin toss)."""
    assert _codes(served, padding) == {(grpc.StatusCode.RESOURCE_EXHAUSTED, False)}


def _not_found(served: Served) -> float:
    """GetUser calls answered NOT_FOUND so far (every worker's)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    counted = [
        line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith("sesame_rpc_requests_total{")
        and 'method="GetUser"' in line
        and '"NOT_FOUND"' in line
    ]
    return sum(float(n) for n in counted)


@pytest.mark.parametrize("size", [20 * 1024, 1024 * 1024])
def test_a_client_that_never_acknowledges_settings_is_bounded_alike(served: Served, size: int) -> None:
    """Found from outside (AK1): gRPC applies its header limit only once the client acknowledged the server's
    SETTINGS; a client that never did had calls with megabytes of headers served (and the health port's)."""
    before = _not_found(served)
    for _ in range(3):
        sock = unacknowledged(served.address)
        try:
            method = "/sesame.api.v1.EnrollmentService/GetUser"
            sock.sendall(
                long_headers(method, served.address, b"x-big", size)
                + frame(
                    DATA,
                    END_STREAM,
                    1,
                    grpc_message(enrol_pb.GetUserRequest(user_id="nobody").SerializeToString()),
                )
            )
            drained(sock)
        finally:
            sock.close()
    assert _not_found(served) == before  # no call ran
    assert _codes(served, 1024) == {(grpc.StatusCode.NOT_FOUND, True)}  # nor is a small call refused
    assert _not_found(served) == before + TRIES

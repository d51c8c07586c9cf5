"""Compressed requests (`grpc-encoding: gzip` or `deflate`), as any gRPC client may send them: a small one is
served as if sent plain, and a decompression bomb (a few tens of KB on the wire that inflate far beyond the
64 KiB a request may hold) is refused RESOURCE_EXHAUSTED by gRPC as it inflates, before any handler runs,
and the next call is served. Found sound from outside (decision 0135, Tried and held): 50 MB inflated from
50 KB was refused in 0.2 s and the worker's memory did not move."""

from __future__ import annotations

import time

import grpc
import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.server.grpc.server import MAX_MESSAGE_BYTES
from tests.e2e.conftest import Served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BOMB = 32 * 1024 * 1024  # bytes once inflated: ~32 KB gzipped


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_served_bomb_refused(served: Served, compression: grpc.Compression) -> None:
    """A small compressed GetUser is answered; BOMB bytes inflated are RESOURCE_EXHAUSTED from gRPC
    within 5 s, and the next call is answered."""
    with grpc.insecure_channel(served.address) as channel:
        get_user = enrol_grpc.EnrollmentServiceStub(channel).GetUser
        with pytest.raises(grpc.RpcError) as small:
            get_user(enrol_pb.GetUserRequest(user_id="nobody"), compression=compression, timeout=10)
        assert small.value.code() is grpc.StatusCode.NOT_FOUND  # inflated, decoded, served

        bomb = enrol_pb.GetUserRequest(user_id="a" * BOMB)
        assert bomb.ByteSize() > 100 * MAX_MESSAGE_BYTES
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            get_user(bomb, compression=compression, timeout=30)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()
        # gRPC's own refusal, before any handler: the handler's would carry a request id in its trailers.
        assert "x-request-id" not in dict(refused.value.trailing_metadata() or ())
        assert time.monotonic() - began < 5

        with pytest.raises(grpc.RpcError) as after:
            get_user(enrol_pb.GetUserRequest(user_id="nobody"), timeout=10)
        assert after.value.code() is grpc.StatusCode.NOT_FOUND

"""A flood of HTTP/2 PINGs on one connection is told to stop at once: GOAWAY ENHANCE_YOUR_CALM
"too_many_pings" after the strikes gRPC tolerates (decision 0081: a ping closer than 10 s to the last is a
strike, 2 tolerated), while other callers are answered. Found sound from outside (decision 0135, Tried and
held): ~80,000 pings in 6 s, other calls answered within 11 ms."""

from __future__ import annotations

import time

import grpc
import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.e2e.conftest import Served
from tests.support.http2 import frame, opened

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PING, GOAWAY = 0x6, 0x7
ENHANCE_YOUR_CALM = 0xB
PINGS = 1000


def _goaway(served: Served) -> tuple[int, bytes] | None:
    """PINGS pings sent at once on a new connection; the (error code, debug data) of the server's GOAWAY,
    read within 5 s, else None."""
    with opened(served.address) as sock:
        sock.sendall(b"".join(frame(PING, 0, 0, n.to_bytes(8, "big")) for n in range(PINGS)))
        buffer = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                return None
            if not chunk:
                return None
            buffer += chunk
            while len(buffer) >= 9:
                length = int.from_bytes(buffer[:3], "big")
                if len(buffer) < 9 + length:
                    break
                if buffer[3] == GOAWAY:
                    payload = buffer[9 : 9 + length]
                    return int.from_bytes(payload[4:8], "big"), payload[8:]
                buffer = buffer[9 + length :]
    return None


def test_a_ping_flood_is_told_to_calm_down(served: Served) -> None:
    """PINGS pings at once: GOAWAY ENHANCE_YOUR_CALM too_many_pings; a call on another connection answered."""
    assert _goaway(served) == (ENHANCE_YOUR_CALM, b"too_many_pings")
    with grpc.insecure_channel(served.address) as channel:
        get_user = enrol_grpc.EnrollmentServiceStub(channel).GetUser
        with pytest.raises(grpc.RpcError) as answered:
            get_user(enrol_pb.GetUserRequest(user_id="nobody"), timeout=5)
    assert answered.value.code() is grpc.StatusCode.NOT_FOUND

"""Connections age (decision 0067): after SESAME_MAX_CONNECTION_AGE_SECONDS the server sends GOAWAY, the
calls in flight get the grace, and the caller's channel connects again for its next calls.

Without it a connection stayed with the worker SO_REUSEPORT gave it for as long as the caller kept it, and a
stream whose request message never came lived until its caller's deadline, or for ever without one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from bench.procs import ESTABLISHED, socket_inodes, sockets
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.support.serve_process import ServeProcess, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

AGE, GRACE = 2, 1  # seconds (gRPC adds up to 10 % to the age)
_OWN = (("grpc.use_local_subchannel_pool", 1),)


def _my_ports(port: int) -> set[int]:
    """This process's local ports of its connections to `port` (from /proc)."""
    mine = socket_inodes("self")
    return {local for local, remote, inode in sockets(ESTABLISHED) if remote == port and inode in mine}


async def _never(done: asyncio.Event) -> AsyncIterator[enrol_pb.GetUserRequest]:
    """A request stream that sends nothing until the test ends."""
    await done.wait()
    yield enrol_pb.GetUserRequest(user_id="late")


@pytest.fixture(name="aging")
def _aging(tmp_path: Path) -> Iterator[ServeProcess]:
    """`sesame serve` with two workers whose connections age after AGE seconds."""
    serving = start_serve(
        tmp_path / "var",
        settings={
            "SESAME_WORKERS": "2",
            "SESAME_MAX_CONNECTION_AGE_SECONDS": str(AGE),
            "SESAME_MAX_CONNECTION_AGE_GRACE_SECONDS": str(GRACE),
        },
    )
    yield serving
    serving.process.terminate()
    serving.process.wait(timeout=30)


async def test_calls_go_on_across_the_age_on_new_connections(aging: ServeProcess) -> None:
    """One channel calling GetUser without pause for three ages: every call answered, and the channel's
    connection was replaced (its local port changed) at least twice."""
    port = int(aging.address.rsplit(":", 1)[1])
    channel = grpc.aio.insecure_channel(aging.address, options=_OWN)
    try:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        await enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone="+33612345678")
        )
        seen: set[int] = set()
        answered = 0
        until = time.monotonic() + 3 * AGE * 1.1 + GRACE
        while time.monotonic() < until:
            answer = await enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"), timeout=5)
            assert answer.user.user_id == "alice"
            answered += 1
            seen |= _my_ports(port)
            await asyncio.sleep(0.02)
        assert answered > 50
        assert len(seen) >= 3, seen
    finally:
        await channel.close()


async def test_a_stream_whose_request_never_comes_ends_with_its_connection(aging: ServeProcess) -> None:
    """A GetUser stream that sends its headers and no message, with no deadline: ended by the server
    within the age and its grace (UNAVAILABLE), while a new call on the same channel is answered."""
    channel = grpc.aio.insecure_channel(aging.address, options=_OWN)
    done = asyncio.Event()
    get_user = channel.stream_unary(
        "/sesame.api.v1.EnrollmentService/GetUser",
        request_serializer=enrol_pb.GetUserRequest.SerializeToString,
        response_deserializer=enrol_pb.GetUserResponse.FromString,
    )
    call = get_user(_never(done))
    try:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call, timeout=AGE * 1.1 + GRACE + 10)
        assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < AGE * 1.1 + GRACE + 5
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await enrol.GetUser(enrol_pb.GetUserRequest(user_id="nobody"), timeout=5)
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        done.set()
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        await channel.close()

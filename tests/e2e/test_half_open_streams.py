"""Streams whose request message never comes: a client opens a call, sends its headers and nothing else.
The call never reaches the shedding of calls in flight (no message, no handler), and each such stream held
~16 KB of the worker until the client's deadline, which the client need not set: 8,000 of them over 8
connections took a worker from 88 to 214 MB before decision 0055. A connection now carries at most
MAX_STREAMS_PER_CONNECTION streams at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): a client queues the
rest on its side, and the worker's memory stays bounded by its connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.support.serve_process import start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CONNECTIONS = 8
STREAMS = 8000  # over CONNECTIONS connections
GROWTH_KB = 50_000  # before the bound: +125 MB; with it: ~+17 MB


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _never(sent: asyncio.Event) -> AsyncIterator[enrol_pb.GetUserRequest]:
    """A request stream that sends nothing until the test ends."""
    await sent.wait()
    yield enrol_pb.GetUserRequest(user_id="late")


async def test_streams_without_a_message_are_bounded_per_connection(tmp_path: Path) -> None:
    """STREAMS half-open GetUser calls over CONNECTIONS connections grow the worker by less than GROWTH_KB,
    and a GetUser on another connection is answered meanwhile."""
    serving = start_serve(tmp_path / "var")
    (worker,) = serving.workers()
    options = (("grpc.use_local_subchannel_pool", 1),)  # a connection each
    channels = [grpc.aio.insecure_channel(serving.address, options=options) for _ in range(CONNECTIONS)]
    other = grpc.aio.insecure_channel(serving.address, options=options)
    done = asyncio.Event()
    calls = []
    try:
        enrol = enrol_grpc.EnrollmentServiceStub(other)
        await enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone="+33612345678")
        )
        before = _rss_kb(worker)
        for n in range(STREAMS):
            get_user = channels[n % CONNECTIONS].stream_unary(
                "/sesame.api.v1.EnrollmentService/GetUser",
                request_serializer=enrol_pb.GetUserRequest.SerializeToString,
                response_deserializer=enrol_pb.GetUserResponse.FromString,
            )
            calls.append(get_user(_never(done), timeout=120))
        await asyncio.sleep(6)  # every stream the connections allow is open on the server by now
        assert _rss_kb(worker) - before < GROWTH_KB
        answer = await enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"), timeout=5)
        assert answer.user.user_id == "alice"
    finally:
        done.set()
        for call in calls:
            call.cancel()
        # Every call ended on this loop: one still pending in gRPC's core when the loop closes completes
        # later on the next test's loop, which logs an "Event loop is closed" error per call.
        await asyncio.gather(*calls, return_exceptions=True)
        await asyncio.gather(*(channel.close() for channel in [*channels, other]))
        serving.process.terminate()
        serving.process.wait(timeout=30)

"""A caller's burst on one connection: more calls at once than the connection's 100 streams (decision 0055).
gRPC's client queues the calls beyond on its side, as docs/operations.md says, but gRPC's server counted
against the bound the streams it had not yet freed ("overload protection"), so it refused new streams the
client was entitled to open (RST_STREAM REFUSED_STREAM): 195 of a burst of 1,000 answered UNAVAILABLE
though nothing was overloaded. The server now counts the streams HTTP/2 counts, as the client does
(decision 0057); the bound itself holds (tests/e2e/test_half_open_streams.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.support.serve_process import start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BURST = 1000  # calls at once on one connection, ten times its streams


async def _answered(call: asyncio.Future[enrol_pb.GetUserResponse]) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name}: {error.details()}"
    return "OK"


async def test_a_burst_beyond_the_streams_of_a_connection_is_queued_not_refused(tmp_path: Path) -> None:
    """BURST GetUser calls at once on a new connection: every one answered."""
    serving = start_serve(tmp_path / "var")
    try:
        async with grpc.aio.insecure_channel(serving.address) as channel:
            enrol = enrol_grpc.EnrollmentServiceStub(channel)
            await enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone="+33612345678")
            )
            request = enrol_pb.GetUserRequest(user_id="alice")
            answers = await asyncio.gather(
                *(_answered(enrol.GetUser(request, timeout=60)) for _ in range(BURST))
            )
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    refused = [answer for answer in answers if answer != "OK"]
    assert refused == [], f"{len(refused)} of {BURST} refused, e.g. {refused[0]}"

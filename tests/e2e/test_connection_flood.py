"""One client opening connections by the hundred: each holds a file descriptor of the worker, and before
decision 0055 nothing bounded them, so the worker's last descriptors went to them and its HSM session
(SoftHSM opens the token's files), its Redis connections and its journal failed for every caller, the bank's
established connections included. Now a worker keeps at most SESAME_MAX_CONNECTIONS open; gRPC closes a
connection beyond at accept, and the connections already open go on being served."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.support.serve_process import start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BOUND = 40  # SESAME_MAX_CONNECTIONS of the server under test
DESCRIPTORS = 300  # the worker's descriptor limit once serving: room for ~250 connections, not for the flood
FLOOD = 400  # connections the client opens, each on a socket of its own
LOGIN = op_pb.Operation(login=op_pb.Login())


def _descriptors(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


async def _check(channel: grpc.aio.Channel) -> bool:
    """Whether a Check on `channel` (its connection opened now) answered; a refused connection does not."""
    try:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)
    except grpc.aio.AioRpcError:
        return False
    return True


async def test_a_flood_of_connections_is_bounded_and_the_open_ones_keep_being_served(tmp_path: Path) -> None:
    """FLOOD connections against a worker whose descriptor limit cannot hold them: at most BOUND answer,
    the worker's descriptors stay bounded, and the bank's connection opened before gets its codes sent
    (the HSM and Redis keep their descriptors) and health says SERVING throughout."""
    serving = start_serve(tmp_path / "var", settings={"SESAME_MAX_CONNECTIONS": str(BOUND)})
    (worker,) = serving.workers()
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))
    bank = grpc.aio.insecure_channel(serving.address)
    flood: list[grpc.aio.Channel] = []
    try:
        auth = auth_grpc.AuthenticationServiceStub(bank)
        await enrol_grpc.EnrollmentServiceStub(bank).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone="+33612345678")
        )
        before = _descriptors(worker)
        # A channel of its own per connection: channels to one address otherwise share one connection.
        flood = [
            grpc.aio.insecure_channel(serving.address, options=(("grpc.use_local_subchannel_pool", 1),))
            for _ in range(FLOOD)
        ]
        answered = sum(await asyncio.gather(*(_check(channel) for channel in flood)))
        assert answered <= BOUND
        assert _descriptors(worker) <= before + BOUND + 10
        for _ in range(3):  # each Start computes its code in the HSM and runs its step in Redis
            started = await auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id="alice", operation=LOGIN), timeout=10
            )
            assert started.challenge_id
        status = await health_pb2_grpc.HealthStub(bank).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await asyncio.gather(*(channel.close() for channel in flood))
        await bank.close()
        serving.process.terminate()
        serving.process.wait(timeout=30)
    assert "HSM unavailable" not in serving.output()

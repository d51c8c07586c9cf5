"""Connections to the delivery-report listener by the hundred: bounded, the worker's calls go on.

Each connection to SESAME_DLR_ADDR holds a file descriptor of the worker, kept HEAD_TIMEOUT seconds when it
sends nothing, and nothing bounded how many: 600 idle ones against a worker limited to 400 descriptors took
its last ones, its HSM session failed (`HSM unavailable after a reconnect`), every StartChallenge answered
UNAVAILABLE and health went NOT_SERVING, as decision 0055 found for the gRPC port. The listener now keeps at
most DlrSettings.max_connections open (a connection beyond is closed as it is accepted), counted out of the
descriptors left to gRPC connections.
"""

from __future__ import annotations

import re
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.support.kannel import Kannel, kannel_settings
from tests.support.outbox import dispatched_state
from tests.support.serve_process import ServeProcess, served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DESCRIPTORS = 400  # the worker's limit once serving: room for its own files and Redis, not for the flood
FLOOD = 600  # idle connections to the report listener, each sending half a request line
# Seconds each call has, less than the listener's HEAD_TIMEOUT: the flood's connections are all still open
# (an attacker opens them again as they are closed).
WITHIN = 3.0


@pytest.fixture
def serving(kannel: Kannel, tmp_path: Path) -> Iterator[ServeProcess]:
    """`sesame serve` through the session's Kannel, reports on a loopback port."""
    with served(tmp_path / "var", kannel_settings(kannel)) as serving:
        yield serving


def test_a_flood_of_report_connections_leaves_the_worker_its_descriptors(serving: ServeProcess) -> None:
    """FLOOD idle connections to the report listener: StartChallenge still answers and its SMS leaves through
    Kannel, health stays SERVING, the HSM keeps its session, and a report still gets its answer (403 here:
    no token) once they close."""
    (worker,) = serving.workers()
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))
    port = re.search(r"delivery reports on port (\d+)", serving.output())
    assert port is not None
    flood: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            connection = socket.create_connection(("127.0.0.1", int(port.group(1))), timeout=5)
            connection.sendall(b"GET /dlr/kannel?")
            flood.append(connection)
        with grpc.insecure_channel(serving.address) as channel:
            enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
                enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone="+33612345678"),
                timeout=WITHIN,
            )
            auth = auth_grpc.AuthenticationServiceStub(channel)
            login = op_pb.Operation(login=op_pb.Login())
            for _ in range(3):  # each computes its code in the HSM and runs its step in Redis
                started = auth.StartChallenge(
                    auth_pb.StartChallengeRequest(user_id="ana", operation=login), timeout=WITHIN
                )
                # Its SMS leaves through Kannel: a connection of its own, a descriptor.
                state = dispatched_state(serving.address, started.challenge_id, within=WITHIN)
                assert state in {auth_pb.DELIVERY_STATE_SENT, auth_pb.DELIVERY_STATE_DELIVERED}
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=WITHIN
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        for connection in flood:
            connection.close()
    answer = httpx.get(f"http://127.0.0.1:{port.group(1)}/dlr/kannel?challenge=a&ref=b&status=1", timeout=10)
    assert answer.status_code == 403
    assert "HSM unavailable" not in serving.output()

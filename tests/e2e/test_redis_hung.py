"""`sesame serve` while its Redis is hung (SIGSTOP: alive, connections accepted by the kernel, nothing
answered): every call is refused UNAVAILABLE within the socket wait, however many arrive together.

Found in a drill: once the worker's lane (its one pipelined connection, decision 0063) had failed, the calls
that came next each waited in turn for the connection attempt of the one before it, and each attempt waited
out the 2 s socket timeout: of eight Starts sent together, the k-th was answered after 2k s (the last after
16 s, long past any caller's deadline: DEADLINE_EXCEEDED rather than UNAVAILABLE with RetryInfo, and calls
piling up in the worker while Redis stayed away).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.support.serve_process import ServeProcess, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# The server's socket waits on Redis (RedisState.from_url's default).
STORE_TIMEOUT = 2.0
TOGETHER = 6


@pytest.fixture(name="serving")
def _serving(tmp_path: Path) -> Iterator[ServeProcess]:
    serving = start_serve(tmp_path / "var")
    try:
        yield serving
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=60)


def _redis_pid(var: Path) -> int:
    return int((var / "redis" / "redis.pid").read_text().strip())


async def _starts(auth: auth_grpc.AuthenticationServiceStub, users: list[str]) -> list[tuple[str, float]]:
    """Each user's StartChallenge, sent together: (status code, seconds to the answer)."""

    async def one(user: str) -> tuple[str, float]:
        began = time.monotonic()
        try:
            await auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=user, operation=op_pb.Operation(login=op_pb.Login())),
                timeout=30,
            )
        except grpc.aio.AioRpcError as error:
            return error.code().name, time.monotonic() - began
        return "OK", time.monotonic() - began

    return await asyncio.gather(*(one(user) for user in users))


async def test_calls_while_redis_is_hung_are_each_refused_within_the_socket_wait(
    serving: ServeProcess, tmp_path: Path
) -> None:
    async with grpc.aio.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        users = [f"hung-{n}" for n in range(2 * TOGETHER)]
        for user in users:
            await enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(
                    user_id=user, client_id="acme", secure_phone=f"+33612{secrets.randbelow(10**6):06d}"
                )
            )
        redis_pid = _redis_pid(tmp_path / "var")
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            # The first calls go on the worker's open connection, which fails them at its socket timeout;
            # those after it connect again, to a Redis that accepts and never answers.
            first = await _starts(auth, users[:TOGETHER])
            then = await _starts(auth, users[TOGETHER:])
        finally:
            os.kill(redis_pid, signal.SIGCONT)
    for code, seconds in first + then:
        assert code == "UNAVAILABLE", (first, then)
        assert seconds < STORE_TIMEOUT + 1.5, (first, then)

"""Out of memory (maxmemory with noeviction), StartChallenge is refused whole (decision 0109).

An outside fault drill (`sesame serve`, 2 workers, a Redis of its own) set maxmemory 3 MB above what Redis
used, under a load of Starts: no Start was refused (12,800 answered OK in 20 s) and Redis grew to 539 MB
against a maxmemory of 425 MB, while the sealer, refused, sealed nothing. Redis refuses a script out of memory
at its first write only when that write may grow memory; open_challenge.lua's first was the budgets'
ZREMRANGEBYSCORE, which frees, so every later write of the step passed. Now the step's first write is one that
Redis refuses out of memory, before anything is written: the Start is UNAVAILABLE with RetryInfo, no challenge
is opened and no SMS queued, and Starts pass again once memory is back.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_server import EmbeddedRedis
from tests.e2e.helpers import retry_info, transfer
from tests.support.console_sms import written
from tests.support.full_redis import full
from tests.support.serve_process import ServeProcess, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USERS = 4
STARTS = 24  # under the fault, 6 a user (within their send budgets); before the fix each answered OK


async def challenges(admin: aioredis.Redis) -> tuple[int, int]:
    """How many challenges Redis holds (their hashes), and how many SMS the outboxes hold."""
    keys = Keyspace()
    opened = 0
    async for key in admin.scan_iter(match="*:ch:*", count=1000):
        opened += b":" not in key.rsplit(b":ch:", 1)[1]  # the hash, not its journal, tail or refusals
    queued = sum([await admin.xlen(outbox) for outbox in keys.outboxes()])
    return opened, queued


async def test_out_of_memory_a_start_is_refused_whole_and_passes_again_after(
    tmp_path: Path, own_redis: EmbeddedRedis, admin: aioredis.Redis, stopped: list[ServeProcess]
) -> None:
    """maxmemory 1 byte, noeviction: 24 Starts, each UNAVAILABLE with RetryInfo, no challenge opened and no
    SMS queued (before: each OK, a challenge and its SMS more); memory back: Starts answer OK, SMS sent."""
    var = tmp_path / "var"
    serving = start_serve(var, {"SESAME_REDIS_URL": own_redis.url, "SESAME_DISPATCHERS": "0"})
    stopped.append(serving)
    async with grpc.aio.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        for n in range(USERS):
            await enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=f"u-{n}", client_id="acme", secure_phone=f"+3361200000{n}")
            )
        await auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="u-0", operation=transfer(100)))
        before = await challenges(admin)
        assert before == (1, 1)
        await full(admin)
        codes = []
        for n in range(STARTS):
            request = auth_pb.StartChallengeRequest(user_id=f"u-{n % USERS}", operation=transfer(200 + n))
            try:
                await auth.StartChallenge(request, timeout=10)
                codes.append((grpc.StatusCode.OK, False))
            except grpc.aio.AioRpcError as error:
                codes.append((error.code(), retry_info(error)))
        assert set(codes) == {(grpc.StatusCode.UNAVAILABLE, True)}
        assert await challenges(admin) == before
        await admin.config_set("maxmemory", 0)
        opened = []
        for n in range(USERS):
            request = auth_pb.StartChallengeRequest(user_id=f"u-{n}", operation=transfer(300 + n))
            opened.append((await auth.StartChallenge(request, timeout=10)).challenge_id)
        assert await challenges(admin) == (1 + USERS, 1 + USERS)
    assert "OutOfMemoryError" in serving.output()
    assert "Traceback" not in serving.output()
    assert written(var / "sms.jsonl") == []

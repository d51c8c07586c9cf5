"""How dispatchers hear of queued SMS (decision 0060), through real processes, Redis, SoftHSM and the console
gateway's file: a `sesame serve` worker's own steps wake its dispatchers, with no blocking read on Redis; what
another process queued is still sent within a sweep, even while the worker's own marks keep its loop busy;
a standalone `sesame dispatch` still watches every shard with its bell."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_keys import SHARDS, Keyspace
from sesame.clients.redis_server import EmbeddedRedis
from tests.e2e.helpers import transfer
from tests.support.serve_process import ServeProcess, start_dispatch, start_serve
from tests.support.shards import one_shard

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

WITHIN = 30.0  # seconds for an SMS to reach the gateway on a loaded machine (it takes milliseconds)
LOAD_SECONDS = 12.0  # how long the stray SMS may wait under the load (the bound is a wait: 0.5 s)
CALLERS = 3  # Starts in flight at once: one answered every few milliseconds, far within a wait
LOADED_USERS = 256  # the load's users, in one shard: 64 open each at most, 16,384 Starts (decision 0095)


def settings(redis: EmbeddedRedis, **more: str) -> dict[str, str]:
    """On the test's Redis, budgets wide enough for one user's many Starts."""
    return {
        "SESAME_REDIS_URL": redis.url,
        "SESAME_SEND_BUDGET_USER": "1000000",
        "SESAME_SEND_BUDGET_PHONE": "1000000",
        **more,
    }


def users_in_shards() -> tuple[str, str]:
    """Two user ids whose shards differ."""
    keys = Keyspace()
    first = "u-0"
    other = next(
        f"u-{n}" for n in itertools.count(1) if keys.shard_of_user(f"u-{n}") != keys.shard_of_user(first)
    )
    return first, other


async def enrol(address: str, *user_ids: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = enrol_grpc.EnrollmentServiceStub(channel)
        for n, user_id in enumerate(user_ids):
            await stub.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=f"+3361200{n:04d}")
            )


async def start(address: str, user_id: str, amount: int = 100) -> str:
    """One StartChallenge; the challenge's id."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = auth_grpc.AuthenticationServiceStub(channel)
        request = auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(amount))
        return (await stub.StartChallenge(request, timeout=20)).challenge_id


def handed(sms_file: Path) -> set[str]:
    """The challenges whose SMS reached the console gateway."""
    if not sms_file.exists():
        return set()
    lines = sms_file.read_text(encoding="utf-8").splitlines()
    return {json.loads(line)["challenge_id"] for line in lines if line}


async def until_handed(sms_file: Path, challenge_id: str, within: float = WITHIN) -> None:
    """Wait, at most `within` seconds, for the challenge's SMS at the gateway."""
    deadline = time.monotonic() + within
    while challenge_id not in handed(sms_file):
        if time.monotonic() > deadline:
            raise AssertionError(f"the SMS of {challenge_id} was not handed within {within} s")
        await asyncio.sleep(0.02)


async def blocked_reads(client: aioredis.Redis) -> int:
    """Connections blocked in XREAD now (CLIENT LIST: `cmd=xread`, flag `b`)."""
    clients = await client.client_list()
    return sum(1 for each in clients if each["cmd"] == "xread" and "b" in each["flags"])


async def xread_calls(client: aioredis.Redis) -> int:
    """XREAD commands Redis ran so far (INFO commandstats)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


async def test_serve_workers_block_on_no_read_and_hand_their_own_sms(
    tmp_path: Path, own_redis: EmbeddedRedis, own_redis_client: aioredis.Redis, stopped: list[ServeProcess]
) -> None:
    """Two dispatching workers: no connection blocked in XREAD, no XREAD run at all, and each Start's SMS
    reaches the gateway (the step that queued it woke its worker's dispatcher)."""
    var = tmp_path / "var"
    serving = start_serve(var, settings=settings(own_redis, SESAME_WORKERS="2"))
    stopped.append(serving)
    user_id, other = users_in_shards()
    await enrol(serving.address, user_id, other)
    for n in range(6):
        challenge_id = await start(serving.address, (user_id, other)[n % 2], 100 + n)
        await until_handed(var / "sms.jsonl", challenge_id)
    assert await blocked_reads(own_redis_client) == 0
    assert await xread_calls(own_redis_client) == 0


async def test_what_another_process_queued_is_sent_while_own_marks_keep_the_loop_busy(
    tmp_path: Path, own_redis: EmbeddedRedis, own_redis_client: aioredis.Redis, stopped: list[ServeProcess]
) -> None:
    """A worker whose own Starts mark one shard again and again (its loop never waits a whole wait for a
    mark) still sends, within a sweep, an SMS queued in another shard by another `sesame serve` that does not
    dispatch (as one killed between its step and its take would leave it): it is handed while the load still
    runs, not once it stops."""
    var = tmp_path / "var"
    dispatching = start_serve(var, settings=settings(own_redis))
    stopped.append(dispatching)
    queuing = start_serve(var, settings=settings(own_redis, SESAME_DISPATCHERS="0"))
    stopped.append(queuing)
    own, stray = users_in_shards()
    loaded = one_shard(own, LOADED_USERS)
    await enrol(dispatching.address, stray, *loaded)
    sms_file = var / "sms.jsonl"
    loading = True

    async def load() -> None:
        async with grpc.aio.insecure_channel(dispatching.address) as channel:
            stub = auth_grpc.AuthenticationServiceStub(channel)
            amounts, turns = itertools.count(1000), itertools.cycle(loaded)

            async def caller() -> None:
                while loading:
                    operation = transfer(next(amounts))
                    request = auth_pb.StartChallengeRequest(user_id=next(turns), operation=operation)
                    await stub.StartChallenge(request, timeout=20)

            await asyncio.gather(*(caller() for _ in range(CALLERS)))

    running = asyncio.create_task(load())
    try:
        await asyncio.sleep(1.0)
        challenge_id = await start(queuing.address, stray)
        await until_handed(sms_file, challenge_id, LOAD_SECONDS)
        assert not running.done(), "the load stopped before the SMS was handed"
    finally:
        loading = False
        await running
    assert Keyspace().shard_of_user(own) != Keyspace().shard_of_user(stray)
    assert await blocked_reads(own_redis_client) == 0


async def test_a_standalone_dispatcher_still_watches_every_shard(
    tmp_path: Path, own_redis: EmbeddedRedis, own_redis_client: aioredis.Redis, stopped: list[ServeProcess]
) -> None:
    """`sesame dispatch` (workers that send nothing) holds one blocked XREAD per shard, its bell rings for a
    Start's entry (XREAD answered and asked again), and the SMS reaches the gateway."""
    var = tmp_path / "var"
    chosen = settings(own_redis, SESAME_DISPATCHERS="0")
    serving = start_serve(var, settings=chosen)
    stopped.append(serving)
    user_id, _ = users_in_shards()
    await enrol(serving.address, user_id)
    dispatching = start_dispatch(var, chosen)
    stopped.append(dispatching)
    deadline = time.monotonic() + WITHIN
    while await blocked_reads(own_redis_client) < SHARDS and time.monotonic() < deadline:  # noqa: ASYNC110 (another process)
        await asyncio.sleep(0.1)
    assert await blocked_reads(own_redis_client) == SHARDS
    before = await xread_calls(own_redis_client)
    challenge_id = await start(serving.address, user_id)
    await until_handed(var / "sms.jsonl", challenge_id)
    assert await xread_calls(own_redis_client) > before

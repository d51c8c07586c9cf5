"""SIGKILL drills (issue 6): a worker of `sesame serve` killed under a load of starts, and a `sesame dispatch`
killed mid-batch, lose no acknowledged challenge and no queued SMS, and an SMS whose acceptance by the
gateway was recorded is never sent again (docs/decisions/0025). Counted, through real processes, Redis,
SoftHSM and the console gateway's file."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
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
from tests.e2e.helpers import transfer
from tests.support.console_sms import written
from tests.support.serve_process import ServeProcess, start_dispatch, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USERS = 20  # each within its send budgets (10 per user and per number an hour)
CLAIM_IDLE = "2"  # seconds before a dead dispatcher's SMS are claimed by another
WITHIN = 60.0  # seconds for every SMS to reach the gateway, on a loaded machine


def phone(n: int) -> str:
    return f"+336120{n:05d}"


def settings(redis: EmbeddedRedis, **more: str) -> dict[str, str]:
    """Two workers on the test session's Redis (the test reads it), SMS claimed after CLAIM_IDLE seconds."""
    return {
        "SESAME_REDIS_URL": redis.url,
        "SESAME_WORKERS": "2",
        "SESAME_OUTBOX_CLAIM_IDLE_SECONDS": CLAIM_IDLE,
        **more,
    }


@pytest.fixture
async def channels(request: pytest.FixtureRequest) -> AsyncIterator[list[grpc.aio.Channel]]:
    """Channels opened by `connect`, closed at the end."""
    opened: list[grpc.aio.Channel] = []
    yield opened
    for channel in opened:
        await channel.close()


def connect(
    address: str, opened: list[grpc.aio.Channel], count: int
) -> list[auth_grpc.AuthenticationServiceStub]:
    """`count` connections (the kernel spreads connections, not calls, over the workers)."""
    stubs = []
    for n in range(count):
        # A distinct option per channel: gRPC would otherwise share one subchannel among them.
        channel = grpc.aio.insecure_channel(address, options=[("sesame.test.channel", n)])
        opened.append(channel)
        stubs.append(auth_grpc.AuthenticationServiceStub(channel))
    return stubs


async def enrol_all(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = enrol_grpc.EnrollmentServiceStub(channel)
        for n in range(USERS):
            await stub.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=f"u-{n}", client_id="acme", secure_phone=phone(n))
            )


async def load(
    stubs: list[auth_grpc.AuthenticationServiceStub], starts: int, on_acknowledged: asyncio.Event, after: int
) -> list[str]:
    """`starts` StartChallenge calls, 16 at a time over the stubs; the ids of those answered OK (a call
    on a killed worker's connection fails and is not acknowledged). Sets `on_acknowledged` after `after`."""
    numbers = iter(range(starts))
    acknowledged: list[str] = []

    async def caller(stub: auth_grpc.AuthenticationServiceStub) -> None:
        for n in numbers:
            request = auth_pb.StartChallengeRequest(user_id=f"u-{n % USERS}", operation=transfer(100 + n))
            try:
                reply = await stub.StartChallenge(request, timeout=20)
            except grpc.aio.AioRpcError:
                continue
            acknowledged.append(reply.challenge_id)
            if len(acknowledged) >= after:
                on_acknowledged.set()

    await asyncio.gather(*(caller(stub) for stub in itertools.islice(itertools.cycle(stubs), 16)))
    return acknowledged


async def every_sms_handed(sms_file: Path, challenge_ids: list[str]) -> Counter[str]:
    """How many times each challenge's SMS reached the gateway, once every one of them did (bounded)."""
    deadline = time.monotonic() + WITHIN
    while True:
        handed = Counter(line["challenge_id"] for line in written(sms_file))
        missing = [c for c in challenge_ids if not handed[c]]
        if not missing or time.monotonic() > deadline:
            assert missing == [], f"{len(missing)} acknowledged challenges never had their SMS sent"
            return handed
        await asyncio.sleep(0.2)


async def every_send_recorded(client: aioredis.Redis, challenge_ids: list[str]) -> None:
    """Wait (bounded) until each challenge's send is recorded: an SMS the killed worker handed over and did
    not record is recorded only once another dispatcher claimed it (after CLAIM_IDLE) and sent it again."""
    keys = Keyspace()
    deadline = time.monotonic() + WITHIN
    for challenge_id in challenge_ids:
        while time.monotonic() < deadline:
            journal = await client.xrange(keys.challenge_journal(challenge_id))
            if any(f[b"event"] == b"challenge.delivery" and f[b"outcome"] == b"sent" for _, f in journal):
                break
            await asyncio.sleep(0.2)


async def check_once_recorded(client: aioredis.Redis, sms_file: Path, challenge_ids: list[str]) -> None:
    """Each challenge exists, its send is recorded exactly once, and no SMS of it reached the gateway
    after the recorded one: a second send (a dispatcher died between the gateway and the record) can only
    come before it."""
    keys = Keyspace()
    sent_at: dict[str, list[datetime]] = {}
    for line in written(sms_file):
        sent_at.setdefault(line["challenge_id"], []).append(datetime.fromisoformat(line["sent_at"]))
    for challenge_id in challenge_ids:
        assert await client.exists(keys.challenge(challenge_id)) == 1
        journal = await client.xrange(keys.challenge_journal(challenge_id))
        recorded = [
            datetime.fromisoformat(fields[b"at"].decode())
            for _, fields in journal
            if fields[b"event"] == b"challenge.delivery" and fields[b"outcome"] == b"sent"
        ]
        assert len(recorded) == 1, challenge_id
        last = max(sent_at[challenge_id]).replace(
            microsecond=max(sent_at[challenge_id]).microsecond // 1000 * 1000
        )
        assert last <= recorded[0], f"{challenge_id} was sent again after its send was recorded"


async def test_a_worker_killed_under_load_loses_no_challenge_and_no_sms(
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    redis_client: aioredis.Redis,
    stopped: list[ServeProcess],
    channels: list[grpc.aio.Channel],
) -> None:
    """120 starts over 8 connections to 2 workers; one worker SIGKILLed after 40 answers: every
    acknowledged challenge is in Redis, its SMS handed to the gateway, and recorded sent once."""
    var = tmp_path / "var"
    serving = start_serve(var, settings=settings(redis_server))
    stopped.append(serving)
    await enrol_all(serving.address)
    stubs = connect(serving.address, channels, 8)
    forty = asyncio.Event()
    loading = asyncio.create_task(load(stubs, 120, forty, 40))
    await asyncio.wait_for(forty.wait(), 60)
    victim = min(serving.workers())
    os.kill(victim, signal.SIGKILL)
    acknowledged = await loading
    assert len(acknowledged) >= 40
    sms_file = var / "sms.jsonl"
    await every_sms_handed(sms_file, acknowledged)
    await every_send_recorded(redis_client, acknowledged)
    await check_once_recorded(redis_client, sms_file, acknowledged)
    assert victim not in serving.workers()


async def test_a_dispatcher_killed_mid_batch_loses_no_sms(
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    redis_client: aioredis.Redis,
    stopped: list[ServeProcess],
    channels: list[grpc.aio.Channel],
) -> None:
    """150 SMS queued while no worker sends (SESAME_DISPATCHERS=0); a `sesame dispatch` SIGKILLed once the
    first reached the gateway, with SMS still in the outbox; a second one sends the rest, the killed one's
    pending SMS after the claim timeout: every SMS handed at least once, each recorded sent once."""
    var = tmp_path / "var"
    chosen = settings(redis_server, SESAME_DISPATCHERS="0")
    serving = start_serve(var, settings=chosen)
    stopped.append(serving)
    await enrol_all(serving.address)
    stubs = connect(serving.address, channels, 4)
    acknowledged = await load(stubs, 150, asyncio.Event(), 150)
    assert len(acknowledged) == 150
    sms_file = var / "sms.jsonl"
    assert written(sms_file) == []  # queued, not sent: no worker dispatches
    first = start_dispatch(var, chosen)
    stopped.append(first)
    deadline = time.monotonic() + WITHIN
    while not written(sms_file) and time.monotonic() < deadline:  # noqa: ASYNC110 (another process writes it)
        await asyncio.sleep(0.005)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=30)
    left = sum([await redis_client.xlen(outbox) for outbox in Keyspace().outboxes()])
    assert left > 0, "the dispatcher finished before it was killed: no batch was cut"
    second = start_dispatch(var, chosen)
    stopped.append(second)
    await every_sms_handed(sms_file, acknowledged)
    await check_once_recorded(redis_client, sms_file, acknowledged)

"""Waiting for the SMS outbox: Start and Resend answer with the SMS queued, and a dispatcher sends it right
after (docs/decisions/0025). A test that reads what was sent waits here, bounded, never by sleeping."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.clients.redis_store import RedisState
from sesame.server.grpc.demo import find_sms

QUEUED = auth_pb.DELIVERY_STATE_QUEUED
SETTLED_WITHIN = 10.0  # seconds: far more than a dispatch takes, even on a loaded machine


async def settled(store: RedisState, within: float = SETTLED_WITHIN) -> None:
    """Return once every SMS queued so far was settled (sent, failed or expired); TimeoutError after
    `within` seconds (an SMS stuck in the outbox is a failure, not a wait)."""
    outbox = store.outbox()
    try:
        async with asyncio.timeout(within):
            while (await outbox.backlog()).depth:  # noqa: ASYNC110 (the dispatcher is Redis's side)
                await asyncio.sleep(0.01)
    finally:
        await outbox.close()


def sms_in(sms_file: Path, challenge_id: str, within: float = SETTLED_WITHIN) -> tuple[str, str]:
    """The (text, code) of the console SMS for `challenge_id`, once a dispatcher wrote it (blocking callers:
    a `sesame serve` in another process); TimeoutError after `within` seconds."""
    deadline = time.monotonic() + within
    while (found := find_sms(sms_file, challenge_id)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no SMS for {challenge_id} in {sms_file}")
        time.sleep(0.01)
    return found


def dispatched_state(address: str, challenge_id: str, within: float = SETTLED_WITHIN) -> int:
    """The challenge's delivery state once its queued SMS was settled (no longer QUEUED), read with
    GetChallenge from the server at `address` (blocking callers); TimeoutError after `within` seconds."""
    deadline = time.monotonic() + within
    with grpc.insecure_channel(address) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        request = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
        while (state := auth.GetChallenge(request, timeout=5).challenge.delivery_state) == QUEUED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the SMS of {challenge_id} is still queued")
            time.sleep(0.01)
    return int(state)


async def keys_holding(client: aioredis.Redis, phone: str) -> list[bytes]:
    """The keys whose name or content holds `phone` in clear (its digits after the +), whatever their type."""
    digits = phone[1:].encode()
    found = []
    async for key in client.scan_iter(count=1000):
        kind = (await client.type(key)).decode()
        if kind == "string":
            values = [await client.get(key) or b""]
        elif kind == "hash":
            values = [v for pair in (await client.hgetall(key)).items() for v in pair]
        elif kind == "stream":
            values = [v for _, f in await client.xrange(key) for pair in f.items() for v in pair]
        elif kind == "set":
            values = list(await client.smembers(key))
        elif kind == "zset":
            values = list(await client.zrange(key, 0, -1))
        else:
            values = list(await client.lrange(key, 0, -1))
        if digits in key or any(digits in value for value in values):
            found.append(key)
    return found

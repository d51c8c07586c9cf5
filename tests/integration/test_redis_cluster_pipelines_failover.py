"""Every cluster pipeline has the slots learnt again once it could not reach a node (decision 0162).

A review of 0162 found five pipelines that did not go through `Scripts` (the outbox's backlog behind its
gauges, the bell's start, a user's pending challenges, a challenge's journal, the archive's trim), so they
kept sending to a primary that had failed over to its replica. The relearning is now the pipeline's own
(`Cluster.pipeline`): whichever way a pipeline is sent, and whoever sends it, the next one reaches the
promoted replica. On a real 3-primary cluster with a replica each, the first primary SIGKILLed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from sesame.clients.redis_connect import connect
from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import StoreUnavailable
from tests.support.redis_cluster import LoopbackCluster

pytestmark = pytest.mark.integration

Sent = Callable[[RedisCluster, str], Awaitable[Any]]


async def _raising(client: RedisCluster, key: str) -> Any:
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.get(key)
        return await pipe.execute()


async def _answering(client: RedisCluster, key: str) -> Any:
    """Asked not to raise: each call answers its own failure."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(key)
        replies = await pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _transaction(client: RedisCluster, key: str) -> Any:
    async with client.pipeline(transaction=True) as pipe:
        pipe.get(key)
        return await pipe.execute()


async def _pending(client: RedisCluster, user: str) -> Any:
    """An adapter's own pipeline (not through `Scripts`): a user's pending challenges."""
    return await RedisState.on(client).challenges.pending_challenges(user, datetime.now(UTC))


SENT: dict[str, Sent] = {
    "raised": _raising,
    "answered": _answering,
    "transaction": _transaction,
    "pending challenges": _pending,
}


async def test_every_pipeline_reaches_the_promoted_replica(tmp_path: Path) -> None:
    """Each way of sending a pipeline on its own client, which knew the slots before the kill: its first
    send after it fails (the dead node), its next one answers from the replica (before: every later one
    failed, until the dead node came back)."""
    with LoopbackCluster(tmp_path / "cluster", replicated=True) as cluster:
        clients = {name: connect(cluster.url, timeout=2.0, retry=Retry(NoBackoff(), 0)) for name in SENT}
        try:
            for client in clients.values():
                assert isinstance(client, RedisCluster)
                await client.initialize()
            key = _key_on(clients["raised"], cluster.nodes[0].port)
            for name, client in clients.items():
                await SENT[name](client, key)
            dead, replica = cluster.nodes[0].port, cluster.replicas[0].port
            cluster.nodes[0].kill()
            living = [node.port for node in [*cluster.nodes[1:], *cluster.replicas]]
            deadline = time.monotonic() + 30
            while not all(_told(port, dead, replica) for port in living):
                assert time.monotonic() < deadline, "the replica was not promoted everywhere"
                await asyncio.sleep(0.1)
            for name, client in clients.items():
                with pytest.raises((RedisConnectionError, StoreUnavailable)):
                    await SENT[name](client, key)
                await SENT[name](client, key)
                assert client.get_node_from_key(key).port == replica, name
        finally:
            for client in clients.values():
                await client.aclose()


def _key_on(client: RedisCluster, port: int) -> str:
    """A user id (or key) whose slot the node on `port` serves, both as a key and as a user's keys' tag."""
    keys = RedisState.on(client).keys
    for n in range(1000):
        user = f"failover-{n}"
        node, pending = client.get_node_from_key(user), client.get_node_from_key(keys.user_pending(user))
        if node.port == pending.port == port:
            return user
    raise AssertionError(f"no user on the node of port {port}")


def _told(port: int, dead: int, replica: int) -> bool:
    """The node on `port` knows the dead node failed and its replica a primary: the slots it answers are the
    new ones (a node the news has not reached yet answers the old map, and a client learns it again)."""
    with redis.Redis(port=port) as node:
        lines = node.execute_command("CLUSTER", "NODES").decode().splitlines()
    flags = {int(line.split()[1].split("@")[0].rpartition(":")[2]): line.split()[2] for line in lines}
    return "fail" in flags[dead].split(",") and "master" in flags[replica].split(",")

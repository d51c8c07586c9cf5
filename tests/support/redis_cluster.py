"""A real Redis Cluster for the tests: three primaries on loopback, each an `EmbeddedRedis` with
`--cluster-enabled yes` in a private directory, the 16,384 slots split between them (docs/decisions/0047).

Slots are given with CLUSTER ADDSLOTSRANGE and the nodes joined with CLUSTER MEET (what `redis-cli --cluster
create` does, without its one-second pauses): the cluster is `cluster_state:ok` within a second or so.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from sesame.clients.redis_connect import connect
from sesame.clients.redis_server import EmbeddedRedis
from tests.support.ports import free_port

SLOTS: Final = 16_384
_BUS_OFFSET: Final = 10_000  # a node's cluster bus listens on its port + 10,000
_NODE_ARGUMENTS: Final = (
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    # A node that stops answering is failed quickly (no replica takes over: there is none).
    "--cluster-node-timeout", "2000",
    "--appendfsync", "no",
    # The fault drills crash a node and let it come back (DEBUG CRASH-AND-RECOVER), from loopback only.
    "--enable-debug-command", "local",
)  # fmt: skip


class LoopbackCluster:
    """`primaries` redis-server processes on free loopback ports, one cluster; `url` for Sésame."""

    def __init__(
        self, data_dir: Path, primaries: int = 3, *, replicated: bool = False, timeout: float = 10.0
    ) -> None:
        """Describe the cluster (`replicated`: a replica for each primary, in `replicas`, which takes over
        when its primary fails); nothing starts before `start()` (or `with`)."""
        self._data_dir = data_dir
        self._primaries = primaries
        self._replicated = replicated
        self.nodes: list[EmbeddedRedis] = []
        self.replicas: list[EmbeddedRedis] = []
        self._timeout = timeout

    @property
    def url(self) -> str:
        """`redis+cluster://127.0.0.1:<port>,...`: every primary as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> None:
        """Start the nodes, split the slots, join them, and wait until every node says cluster_state:ok."""
        try:
            for index in range(self._primaries):
                self.nodes.append(_started_node(self._data_dir / f"node{index}"))
            clients = [redis.Redis(port=node.port) for node in self.nodes]
            share = SLOTS // len(clients)
            for index, client in enumerate(clients):
                last = SLOTS - 1 if index == len(clients) - 1 else (index + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
                # Distinct epochs: the nodes agree on who owns what without a collision round.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
            self._wait_until_ok(clients)
            if self._replicated:
                self._replicate()
        except BaseException:
            self.stop()
            raise

    def _replicate(self) -> None:
        """A replica for each primary: met, told whom to follow once (again restarts its sync), synced."""
        primaries = [redis.Redis(port=node.port) for node in self.nodes]
        ids = [client.execute_command("CLUSTER", "MYID").decode() for client in primaries]
        self.replicas = [_started_node(self._data_dir / f"replica{n}") for n in range(len(primaries))]
        replicas = [redis.Redis(port=node.port) for node in self.replicas]
        for node in self.replicas:
            primaries[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        told: set[int] = set()
        waiting = dict(enumerate(replicas))
        deadline = time.monotonic() + self._timeout
        while waiting and time.monotonic() < deadline:
            for index, replica in list(waiting.items()):
                if index not in told:
                    with contextlib.suppress(redis.ResponseError):  # its primary not known to it yet
                        replica.execute_command("CLUSTER", "REPLICATE", ids[index])
                        told.add(index)
                elif replica.info("replication").get("master_link_status") == "up":
                    del waiting[index]
            time.sleep(0.05)
        for client in [*primaries, *replicas]:
            client.close()
        if waiting:
            raise AssertionError(f"replicas {sorted(waiting)} of the loopback cluster did not sync")

    def _wait_until_ok(self, clients: list[redis.Redis]) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            infos = [_cluster_info(client) for client in clients]
            if all(
                info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == len(clients)
                for info in infos
            ):
                for client in clients:
                    client.close()
                return
            time.sleep(0.02)
        raise AssertionError(f"the loopback cluster is not ok after {self._timeout} s: {infos}")

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL)."""
        for node in [*self.nodes, *self.replicas]:
            node.stop()

    def __enter__(self) -> Self:
        """Start, for `with LoopbackCluster(path) as cluster:`."""
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop."""
        self.stop()


def _started_node(data_dir: Path) -> EmbeddedRedis:
    """A cluster node on a port whose bus port (+10,000) is free too: redis-server refuses a port above
    55,535. A port taken meanwhile by another process: EmbeddedRedis picks another, a few times."""
    node = EmbeddedRedis(data_dir, extra_arguments=_NODE_ARGUMENTS, pick_port=_node_port)
    node.start()
    return node


def _node_port() -> int:
    while True:
        port = free_port()
        if port + _BUS_OFFSET <= 65_535 and _bindable(port + _BUS_OFFSET):
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    """CLUSTER INFO of one node, as `field: value` (redis-py parses it for cluster clients only)."""
    text = client.execute_command("CLUSTER", "INFO").decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    """A 3-primary Redis Cluster on loopback for the session, its nodes' data in a temporary directory."""
    with LoopbackCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
async def redis_cluster_client(redis_cluster: LoopbackCluster) -> AsyncIterator[RedisCluster]:
    """Sésame's own cluster client (`connect`) on the session's cluster, every primary flushed before."""
    client = connect(redis_cluster.url, timeout=5.0)
    assert isinstance(client, RedisCluster)
    # Both go to every primary: each test loads its scripts again (NOSCRIPT, then SCRIPT LOAD everywhere).
    await client.flushall()
    await client.script_flush()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()

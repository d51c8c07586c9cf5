"""A slot on the move, on a real 3-primary Redis Cluster, through Sésame's own cluster client (`connect`,
decision 0068): an ASK is followed with ASKING and the command on one connection; no script runs on a
migrating slot (refused before its first command on the migrating node, not sent on an ASK to the importing
one), so none is stopped half-way and none writes a key the importing node does not own yet; the client
learning the slots again (its fifth MOVED, or a call cancelled while it learns) cuts no call in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sesame.clients.redis_connect import connect
from sesame.clients.redis_outbox import GROUP, RedisOutbox
from sesame.clients.redis_scripts import Scripts
from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import StoreUnavailable
from tests.support.redis_cluster import LoopbackCluster

pytestmark = pytest.mark.integration

PLACE = "sesame:{s:3}"  # a shard's place: every key of the test in its slot
NODE_CONNECTIONS = 4  # connections to the importing node before the ASK: the command must not take another


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    """A cluster of this test's own, whose slots it moves."""
    with LoopbackCluster(tmp_path / "cluster") as cluster:
        yield cluster


@pytest.fixture
async def client(own_cluster: LoopbackCluster) -> AsyncIterator[RedisCluster]:
    """The store's client: no retry (a script is never sent twice, decisions 0047 and 0063)."""
    client = connect(own_cluster.url, timeout=5.0, retry=Retry(NoBackoff(), 0))
    assert isinstance(client, RedisCluster)
    await client.initialize()
    try:
        yield client
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Move:
    """One slot moved from `source` to `target`, step by step, as `redis-cli --cluster reshard` does."""

    slot: int
    source: ClusterNode
    target: ClusterNode

    @classmethod
    def of(cls, client: RedisCluster, key: str) -> Move:
        source = client.get_node_from_key(key)
        assert source is not None
        target = next(node for node in client.get_primaries() if node.name != source.name)
        return cls(client.keyslot(key), source, target)

    async def begin(self) -> None:
        source_id = await self.source.execute_command("CLUSTER", "MYID")
        await self.target.execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING", source_id)
        target_id = await self.target.execute_command("CLUSTER", "MYID")
        await self.source.execute_command("CLUSTER", "SETSLOT", self.slot, "MIGRATING", target_id)

    async def migrate(self, *keys: str) -> None:
        await self.source.execute_command(
            "MIGRATE", self.target.host, self.target.port, "", 0, 5000, "KEYS", *keys
        )

    async def keys_on(self, node: ClusterNode) -> dict[bytes, object]:
        """The slot's keys on `node`, each with its serialised value (ASKING: the importing node's too)."""
        admin = aioredis.Redis(host=node.host, port=node.port)
        try:
            found = {}
            for key in await admin.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, 1000):
                async with admin.pipeline(transaction=False) as pipe:
                    found[key] = (await pipe.execute_command("ASKING").dump(key).execute())[1]
            return found
        finally:
            await admin.aclose()


async def test_a_read_asked_to_the_importing_node_goes_with_asking_on_its_connection(
    client: RedisCluster,
) -> None:
    """A key already migrated is read through ASK, however many connections the client has to the node
    (redis-py sent ASKING on one and the command on another: MOVED back, its tries ran out)."""
    key = f"{PLACE}:moved"
    await client.set(key, b"here")
    move = Move.of(client, key)
    await asyncio.gather(
        *(client.execute_command("PING", target_nodes=move.target) for _ in range(NODE_CONNECTIONS))
    )
    await move.begin()
    await move.migrate(key)
    assert [await client.get(key) for _ in range(3)] == [b"here"] * 3


async def _moving(
    client: RedisCluster, moved: str
) -> tuple[str, Move, tuple[dict[bytes, object], dict[bytes, object]]]:
    """A key a script declares and one it reaches undeclared (a feed's last id), in a slot set migrating
    with one of them (`moved`: "declared" or "reached") already on the importing node: the declared key,
    the move, and the slot's keys on either node."""
    key, reached = f"{PLACE}:declared", f"{PLACE}:feed:last"
    await client.set(key, b"before")
    await client.set(reached, b"0-0")
    move = Move.of(client, key)
    await move.begin()
    await move.migrate(key if moved == "declared" else reached)
    return key, move, (await move.keys_on(move.source), await move.keys_on(move.target))


async def test_no_script_runs_on_a_migrating_slot_while_its_keys_are_on_the_migrating_node(
    client: RedisCluster,
) -> None:
    """Every script, its keys still on the migrating node (some reached undeclared already moved: where
    Redis stopped a script half-way), refuses to start: StoreUnavailable MIGRATING, nothing written."""
    scripts = Scripts(client)
    key, move, before = await _moving(client, moved="reached")
    refused = {}
    for name in sorted(scripts.names().values()):
        with pytest.raises(StoreUnavailable) as raised:
            await scripts.run(name, [key], ["x"] * 12)
        refused[name] = str(raised.value)
    assert set(refused.values()) == {"ResponseError MIGRATING"}, refused
    assert (await move.keys_on(move.source), await move.keys_on(move.target)) == before


async def test_a_script_whose_keys_moved_is_not_sent_on_the_ask(client: RedisCluster) -> None:
    """A script whose declared keys all moved (Redis answers ASK) is refused, not run on the importing node
    where the keys it reaches undeclared may not be yet: StoreUnavailable MIGRATING, nothing written."""
    scripts = Scripts(client)
    key, move, before = await _moving(client, moved="declared")
    with pytest.raises(StoreUnavailable) as raised:
        await scripts.run("journal_lease", [key], ["sealer-1", 30_000])
    assert str(raised.value) == "ResponseError MIGRATING"
    assert (await move.keys_on(move.source), await move.keys_on(move.target)) == before


async def test_learning_the_slots_again_cuts_no_call_in_flight(client: RedisCluster) -> None:
    """redis-py learns the slots again at its fifth MOVED, closing every node's connections: a call in
    flight meanwhile (a blocking read here) failed ConnectionError. It now ends as it would have."""
    node = client.get_primaries()[0]
    empty = [slot for slot in range(16_384) if client.nodes_manager.slots_cache[slot][0].name == node.name][
        :5
    ]
    other = next(primary for primary in client.get_primaries() if primary.name != node.name)
    other_id = await other.execute_command("CLUSTER", "MYID")
    blocked = asyncio.create_task(client.blpop([f"{PLACE}:never"], timeout=2))
    await asyncio.sleep(0.2)  # the blocking read is on its connection
    for slot in empty:
        for primary in client.get_primaries():
            await primary.execute_command("CLUSTER", "SETSLOT", slot, "NODE", other_id)
        assert await client.get(_key_in(client, slot)) is None  # MOVED, followed
    assert client.get_node_from_key(_key_in(client, empty[-1])).name == other.name  # type: ignore[union-attr]
    assert await blocked is None  # its timeout, not ConnectionError


def _key_in(client: RedisCluster, slot: int) -> str:
    """A key of `slot`."""
    return next(f"k{n}" for n in range(1_000_000) if client.keyslot(f"k{n}") == slot)


async def test_a_call_cancelled_while_the_client_learns_the_slots_cuts_no_other(
    client: RedisCluster, own_cluster: LoopbackCluster
) -> None:
    """A call whose deadline ends while it has the client learn the slots again (every node slow to answer
    here) left redis-py's learning half-way, which then closed every connection, another call's in flight
    included. The cancelled call leaves; the learning and the other call go on."""
    blocked = asyncio.create_task(client.blpop([f"{PLACE}:never"], timeout=2))
    await asyncio.sleep(0.2)  # the blocking read is on its connection
    await asyncio.gather(*(_slow(node.port, 0.6) for node in own_cluster.nodes), _cancelled_learning(client))
    assert await blocked is None  # its timeout, not ConnectionError


async def _slow(port: int, seconds: float) -> None:
    """The node silent for `seconds` (DEBUG SLEEP)."""
    admin = aioredis.Redis(port=port, socket_timeout=seconds + 5)
    try:
        await admin.execute_command("DEBUG", "SLEEP", seconds)
    finally:
        await admin.aclose()


async def _cancelled_learning(client: RedisCluster) -> None:
    """A read that has the client learn the slots again, cancelled while it waits for a node."""
    await asyncio.sleep(0.1)  # every node asleep
    client._initialize = True  # what a connection error or a CLUSTERDOWN leaves: learn the slots again
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(client.get(f"{PLACE}:any"), 0.2)


async def test_a_take_hands_out_the_other_shards_entries_while_one_shards_slot_migrates(
    client: RedisCluster,
) -> None:
    """take_outbox is refused on a migrating slot (MIGRATING): the dispatcher's take still hands out the
    entries of the other shards, taken in the same round trip (before, the take failed whole: no SMS left
    for any user while one slot moved, and the other shards' entries waited pending for their idle time)."""
    outbox = RedisOutbox.beside(client)
    keys = RedisState.on(client).keys
    challenge_ids = [f"n0nce.k1.d6.u{n:016x}" for n in (0, 1)]  # shards 0 and 1
    streams = [keys.outbox_of(challenge_id) for challenge_id in challenge_ids]
    now_ms = str(int(datetime.now(UTC).timestamp() * 1000))
    for stream, challenge_id in zip(streams, challenge_ids, strict=True):
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        await client.xadd(stream, {"challenge_id": challenge_id, "queued_at": now_ms})
    await Move.of(client, streams[0]).begin()
    try:
        taken = await outbox.take("dispatcher-1", 10, timedelta(seconds=1))
    finally:
        await outbox.close()
    assert [queued.challenge_id for queued in taken] == [challenge_ids[1]]

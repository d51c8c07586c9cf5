"""Sésame's Redis adapters on a real 3-primary Redis Cluster (docs/decisions/0047): the Scripts funnel
loads every script on every primary and runs a one-slot script wherever its slot lives; a script whose keys
span slots fails loudly, naming itself, whether the client sees it (declared keys) or a node refuses it (a
key reached inside the script); pipelines, the dispatcher's blocking read, INFO and the health check work
on the cluster; a redirect after a slot migration is followed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster

from sesame.clients.redis_connect import check_cluster, connect, is_cluster_url, ready
from sesame.clients.redis_outbox import GROUP, RedisOutbox
from sesame.clients.redis_provider_ids import RedisProviderIds
from sesame.clients.redis_scripts import Scripts
from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import ConfigurationError, ScriptSpansSlots, StoreUnavailable
from sesame.server.domain.model import SentPart
from tests.support.ports import free_port
from tests.support.redis_cluster import LoopbackCluster

pytestmark = pytest.mark.integration

LEASE = "journal_lease"  # a one-key script (the sealer's lease), run on keys of our choosing
LEASE_MS = 30_000
TAKE = "take_outbox"  # reads each entry's challenge in the outbox's place, a key it does not declare
CHALLENGE = "n0nce.k1.d6.u0123456789abcdef"
WITHIN = 10.0  # seconds: a bound on waits for the cluster, far above what they take


def one_key_per_primary(client: RedisCluster, stem: str) -> list[str]:
    """Keys `<stem>{<n>}` found for each primary in turn: a key whose slot that primary serves."""
    found: dict[str, str] = {}
    n = 0
    while len(found) < len(client.get_primaries()):
        key = f"{stem}{{{n}}}"
        found.setdefault(client.get_node_from_key(key).name, key)
        n += 1
    return list(found.values())


async def evalsha_calls(client: RedisCluster) -> int:
    """EVALSHA commands every primary ran so far (INFO commandstats, read on each primary)."""
    total = 0
    for node in client.get_primaries():
        stats = await client.info("commandstats", target_nodes=node)
        total += int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return total


async def test_the_cluster_has_three_primaries_serving_every_slot(redis_cluster_client: RedisCluster) -> None:
    await check_cluster(redis_cluster_client)
    assert len(redis_cluster_client.get_primaries()) == 3
    served = sum(end - start + 1 for start, end in _ranges(await redis_cluster_client.cluster_slots()))
    assert served == 16_384


def _ranges(slots: dict[tuple[int, int], object]) -> list[tuple[int, int]]:
    return list(slots)


def test_a_cluster_url_names_its_seeds_and_nothing_else() -> None:
    assert is_cluster_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    assert is_cluster_url("rediss+cluster://user:secret@redis-0:6379")
    assert not is_cluster_url("redis://127.0.0.1:6379/0")
    for wrong in ("redis+cluster://127.0.0.1", "redis+cluster://h:1/3", "redis+cluster://h:1?x=1"):
        with pytest.raises(ConfigurationError):
            connect(wrong, timeout=1.0)


async def test_a_one_slot_script_runs_through_the_funnel_on_every_primary(
    redis_cluster_client: RedisCluster,
) -> None:
    scripts = Scripts(redis_cluster_client)
    leases = one_key_per_primary(redis_cluster_client, "test:lease:")
    for key in leases:
        assert await scripts.run(LEASE, [key], ["sealer-1", LEASE_MS]) == 1
        assert await scripts.run(LEASE, [key], ["sealer-2", 1000]) == 0
    for key in leases:
        assert await redis_cluster_client.get(key) == b"sealer-1"
    # The first EVALSHA met NOSCRIPT and redis-py sent SCRIPT LOAD: to every primary, not one.
    sha = scripts._scripts["journal_lease"].sha
    for node in redis_cluster_client.get_primaries():
        exists = await redis_cluster_client.execute_command("SCRIPT EXISTS", sha, target_nodes=node)
        assert [bool(one) for one in exists] == [True]


async def test_a_script_whose_keys_span_slots_is_refused_by_name_before_it_is_sent(
    redis_cluster_client: RedisCluster,
) -> None:
    scripts = Scripts(redis_cluster_client)
    apart = one_key_per_primary(redis_cluster_client, "test:lease:")[:2]
    before = await evalsha_calls(redis_cluster_client)
    with pytest.raises(ScriptSpansSlots) as refused:
        await asyncio.wait_for(scripts.run(LEASE, apart, ["sealer-1", 1000]), WITHIN)
    assert refused.value.script == "journal_lease"
    assert "journal_lease" in str(refused.value)
    assert await evalsha_calls(redis_cluster_client) == before
    assert await redis_cluster_client.exists(*apart) == 0


async def test_pipelines_and_transactions_run_on_each_primary(redis_cluster_client: RedisCluster) -> None:
    ids = RedisProviderIds(redis_cluster_client)
    until = datetime.now(UTC) + timedelta(hours=1)
    owners = one_key_per_primary(redis_cluster_client, "smsc-")
    provider_ids = [key.replace("{", "").replace("}", "") for key in owners]
    for n, provider_id in enumerate(provider_ids):
        await ids.remember(provider_id, SentPart(f"ch-{n}", f"ref-{n}", 2), until)
    for n, provider_id in enumerate(provider_ids):
        assert await ids.owner(provider_id) == SentPart(f"ch-{n}", f"ref-{n}", 2)
        assert await ids.delivered_parts(f"ref-{n}", provider_id, 2, until) == 1
        assert await ids.delivered_parts(f"ref-{n}", provider_id, 2, until) == 1
        assert await ids.delivered_parts(f"ref-{n}", f"{provider_id}-2", 2, until) == 2


async def test_the_dispatchers_blocking_read_wakes_on_an_entry_on_the_cluster(
    redis_cluster_client: RedisCluster,
) -> None:
    """The outbox's own cluster client (`beside`) blocks in XREAD on the node of each shard's stream (the
    bell, decision 0044); an entry added meanwhile is taken with take_outbox.lua, one EVALSHA per shard in a
    pipeline grouped by node, its challenge read in its place (none here: the hash was never written)."""
    outbox = RedisOutbox.beside(redis_cluster_client)
    keys = RedisState.on(redis_cluster_client).keys
    challenge_id = "n0nce.k1.d6.u0123456789abcdef"
    stream = keys.outbox_of(challenge_id)
    await redis_cluster_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    node = redis_cluster_client.get_node_from_key(stream)
    try:
        taking = asyncio.create_task(outbox.take("dispatcher-1", 10, timedelta(seconds=WITHIN)))
        async with asyncio.timeout(WITHIN):
            # The dispatcher is Redis's side: its block is seen in the node's INFO.
            while (await redis_cluster_client.info("clients", target_nodes=node))["blocked_clients"] == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await redis_cluster_client.xadd(stream, {"challenge_id": challenge_id, "queued_at": _now_ms()})
        taken = await asyncio.wait_for(taking, WITHIN)
    finally:
        await outbox.close()
    assert [(queued.challenge_id, queued.challenge) for queued in taken] == [(challenge_id, None)]


def _now_ms() -> str:
    """An entry's queue time: the present (nothing fixed reaches Redis, decision 0058)."""
    return str(int(datetime.now(UTC).timestamp() * 1000))


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    """A cluster of this test's own, which it may break."""
    with LoopbackCluster(tmp_path / "cluster") as cluster:
        yield cluster


async def test_a_redirect_after_a_slot_migration_is_followed(own_cluster: LoopbackCluster) -> None:
    client = connect(own_cluster.url, timeout=5.0)
    assert isinstance(client, RedisCluster)
    scripts = Scripts(client)
    try:
        key = "test:lease:{moving}"
        assert await scripts.run(LEASE, [key], ["sealer-1", 60_000]) == 1
        source = client.get_node_from_key(key)
        target = next(node for node in client.get_primaries() if node.name != source.name)
        await _migrate_slot(client.keyslot(key), source, target)
        # The client still routes the slot to `source`, which answers MOVED: followed, not an error.
        assert await scripts.run(LEASE, [key], ["sealer-1", 60_000]) == 2  # renewed
        assert await scripts.run(LEASE, [key], ["sealer-2", 60_000]) == 0
        assert client.get_node_from_key(key).name == target.name
    finally:
        await client.aclose()


async def _migrate_slot(slot: int, source: ClusterNode, target: ClusterNode) -> None:
    """Move `slot` and its keys from `source` to `target`, as `redis-cli --cluster reshard` does."""
    source_id = await source.execute_command("CLUSTER", "MYID")
    target_id = await target.execute_command("CLUSTER", "MYID")
    await target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    await source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    while keys := await source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        await source.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
    for node in (target, source):
        await node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def test_boot_and_health_refuse_a_cluster_that_is_not_ok(own_cluster: LoopbackCluster) -> None:
    await ready(own_cluster.url)
    store = RedisState.from_url(own_cluster.url)
    try:
        await store.check()
        # One slot no primary serves: the cluster is down for the keys of that slot, and says so.
        first = own_cluster.nodes[0]
        client = connect(f"redis://127.0.0.1:{first.port}/0", timeout=5.0)
        await client.execute_command("CLUSTER", "DELSLOTS", 0)
        await client.aclose()
        async with asyncio.timeout(WITHIN):
            while (refused := await _refusal(store)) is None:  # noqa: ASYNC110 (Redis's side)
                await asyncio.sleep(0.02)
        assert "cluster_state:fail" in str(refused)
        with pytest.raises(StoreUnavailable):
            await ready(own_cluster.url)
    finally:
        await store.close()


async def _refusal(store: RedisState) -> StoreUnavailable | None:
    """What the health check says of the store: None when it passes."""
    try:
        await store.check()
    except StoreUnavailable as exc:
        return exc
    return None


async def test_calls_in_flight_to_one_primary_are_not_capped_by_the_client(
    redis_cluster_client: RedisCluster,
) -> None:
    """As with one server, the connections to a node are not capped by redis-py (its default cap of 100 per
    node raised MaxConnectionsError): the server's own shedding bounds the calls in flight."""
    scripts = Scripts(redis_cluster_client)
    key = "test:lease:{crowd}"
    await scripts.run(LEASE, [key], ["sealer-1", 60_000])  # loaded once
    taken = await asyncio.gather(*(scripts.run(LEASE, [key], [f"sealer-{n}", 60_000]) for n in range(300)))
    assert sorted(taken) == [0] * 299 + [2]  # sealer-1 renewed it, every other refused


@pytest.mark.parametrize("where", ["same primary", "other primary"])
async def test_a_script_reaching_another_slot_fails_by_name_wherever_that_slot_is(
    redis_cluster_client: RedisCluster, where: str
) -> None:
    """take_outbox.lua reads each entry's challenge in its outbox's place, a key it does not declare. Given
    an outbox named `{}{n}:outbox` (an empty tag: the whole name is hashed), that place `{}{n}` names a key of
    another slot: a node refuses it whether it serves that slot or not (without a shebang, a script would
    reach another slot of the same node and work until that slot migrates); both are ScriptSpansSlots."""

    def fits(place: str) -> bool:
        stream, challenge = f"{place}:outbox", f"{place}:ch:{CHALLENGE}"
        same = redis_cluster_client.get_node_from_key(stream) == redis_cluster_client.get_node_from_key(
            challenge
        )
        other_slot = redis_cluster_client.keyslot(stream) != redis_cluster_client.keyslot(challenge)
        return other_slot and same == (where == "same primary")

    place = next(one for one in (f"{{}}{{{n}}}" for n in range(10_000)) if fits(one))
    stream = f"{place}:outbox"
    await redis_cluster_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await redis_cluster_client.xadd(stream, {"challenge_id": CHALLENGE, "queued_at": _now_ms()})
    scripts = Scripts(redis_cluster_client)
    with pytest.raises(ScriptSpansSlots) as refused:
        await asyncio.wait_for(scripts.run(TAKE, [stream], [GROUP, "dispatcher-1", 10, ""]), WITHIN)
    assert refused.value.script == "take_outbox"


async def test_a_cluster_no_node_of_which_answers_is_store_unavailable_for_scripts_and_reads() -> None:
    """redis-py's cluster client says it could reach no node (learning the slots again after a node failed,
    every node away) with a RedisClusterException, which is no RedisError: the funnel let it through and the
    call was answered INTERNAL (decision 0066)."""
    client = connect(f"redis+cluster://127.0.0.1:{free_port()}", timeout=1.0)
    scripts = Scripts(client)
    try:
        with pytest.raises(StoreUnavailable) as script:
            await scripts.run(LEASE, ["test:lease:{away}"], ["sealer-1", 60_000])
        with pytest.raises(StoreUnavailable) as read:
            await scripts.call("read", client.hgetall("test:{away}"))
    finally:
        await client.aclose()
    assert str(script.value) == str(read.value) == "RedisClusterException"

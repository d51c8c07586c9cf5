"""A Redis Cluster failing under load, through the real `sesame serve` (its workers on uvloop) on a cluster of
the test's own (decision 0066, as 0062 for one server): every client connection killed on every node
(CLIENT KILL); every node crashed at once and back (the client, learning the slots again, reaches none);
then a primary crashed and back a few seconds later, its slots without a replica: while it is away its slots
fail to connect and, once the others mark it failed, every node answers CLUSTERDOWN; a primary out of memory;
a primary silent past the server's socket timeout. And a user's slot migrated under its calls (TRYAGAIN,
ASK, then MOVED), each refused call having written nothing.

Every Start and Verify answers OK or UNAVAILABLE with RetryInfo, never INTERNAL (a write on a connection
uvloop saw closed was a RuntimeError that reached the caller as INTERNAL); no call fails unexpectedly in the
server's log; and the server answers again once the cluster is ok.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.grpc.demo import find_sms
from tests.e2e.helpers import CONTEXT, out_of_memory, retry_info, transfer
from tests.support.redis_cluster import LoopbackCluster
from tests.support.serve_process import ServeProcess, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USERS = 8  # one loop of Start then Verify each, all at once
CONNECTIONS = 2
READS = 8  # reads at once of a challenge on a moving slot
CLUSTER_OK_WITHIN = 20.0  # seconds: a restarted primary is taken back within ~2 node timeouts (2 s each)
SETTINGS = {
    # Budgets out of the way: the drill is about Redis, not about anti-pumping.
    "SESAME_SEND_BUDGET_USER": "100000",
    "SESAME_SEND_BUDGET_PHONE": "100000",
    "SESAME_SEND_CEILING_CALLER": "100000",
    "SESAME_SEND_CEILING_GLOBAL": "100000",
}


@dataclass
class Tally:
    """The drill's answers by RPC and code; the refusals that are not UNAVAILABLE with RetryInfo."""

    codes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    wrong: list[tuple[str, str, str]] = field(default_factory=list)

    def ok(self, rpc: str) -> None:
        self.codes[rpc, "OK"] += 1

    def refused(self, rpc: str, error: grpc.aio.AioRpcError) -> None:
        self.codes[rpc, error.code().name] += 1
        if error.code() is not grpc.StatusCode.UNAVAILABLE or not retry_info(error):
            self.wrong.append((rpc, error.code().name, error.details() or ""))


@dataclass(frozen=True)
class Drill:
    """The cluster, the server on it, and its users' stubs."""

    cluster: LoopbackCluster
    serving: ServeProcess
    sms_file: Path
    auth: list[auth_grpc.AuthenticationServiceStub]


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    """A cluster of the test's own, which it breaks."""
    with LoopbackCluster(tmp_path / "cluster") as cluster:
        yield cluster


@pytest.fixture
async def drill(own_cluster: LoopbackCluster, tmp_path: Path) -> AsyncIterator[Drill]:
    var = tmp_path / "var"
    serving = start_serve(var, settings={**SETTINGS, "SESAME_REDIS_URL": own_cluster.url})
    options = (("grpc.use_local_subchannel_pool", 1),)  # a connection each
    channels = [grpc.aio.insecure_channel(serving.address, options=options) for _ in range(CONNECTIONS)]
    try:
        enrol = enrol_grpc.EnrollmentServiceStub(channels[0])
        for n in range(USERS):
            await enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(
                    user_id=f"u{n}", client_id="acme", secure_phone=f"+336120000{n:02d}"
                ),
                timeout=10,
            )
        yield Drill(
            own_cluster,
            serving,
            var / "sms.jsonl",
            [auth_grpc.AuthenticationServiceStub(c) for c in channels],
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
        serving.process.terminate()
        serving.process.wait(timeout=30)


async def _code(sms_file: Path, challenge_id: str, within: float) -> str | None:
    """The code of the challenge's SMS once the server's dispatcher wrote it; None after `within` seconds."""
    deadline = time.monotonic() + within
    while (found := find_sms(sms_file, challenge_id)) is None:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.05)
    return found[1]


async def _flow(drill: Drill, user_id: str, auth: auth_grpc.AuthenticationServiceStub, tally: Tally) -> bool:
    """One Start and, once its SMS came, the Verify of its code; whether both answered OK and verified."""
    start = auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
    try:
        challenge_id = (await auth.StartChallenge(start, timeout=10)).challenge_id
    except grpc.aio.AioRpcError as error:
        tally.refused("StartChallenge", error)
        return False
    tally.ok("StartChallenge")
    code = await _code(drill.sms_file, challenge_id, within=3.0)
    if code is None:  # its SMS not sent yet (Redis away): the next Start opens another
        return False
    verify = auth_pb.VerifyChallengeRequest(
        challenge_id=challenge_id, code=code, operation=transfer(), context=CONTEXT
    )
    try:
        answer = await auth.VerifyChallenge(verify, timeout=10)
    except grpc.aio.AioRpcError as error:
        tally.refused("VerifyChallenge", error)
        return False
    tally.ok("VerifyChallenge")
    return answer.result == auth_pb.VERIFY_RESULT_VERIFIED


@contextlib.asynccontextmanager
async def loaded(drill: Drill, tally: Tally) -> AsyncIterator[None]:
    """Every user's Start and Verify in a loop, until the block ends."""
    stop = asyncio.Event()

    async def loop(n: int) -> None:
        while not stop.is_set():
            if not await _flow(drill, f"u{n}", drill.auth[n % CONNECTIONS], tally):
                await asyncio.sleep(0.05)

    loops = [asyncio.create_task(loop(n)) for n in range(USERS)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*loops)


async def _kill_every_client(cluster: LoopbackCluster) -> None:
    """CLIENT KILL of every normal client on every node (the server's connections, mid-call or idle)."""
    for node in cluster.nodes:
        admin = aioredis.Redis(port=node.port)
        try:
            await admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
        finally:
            await admin.aclose()


async def _crash_and_recover(node: EmbeddedRedis, down: float) -> None:
    """Crash the node (DEBUG CRASH-AND-RECOVER: every socket closed, nothing saved beyond what it wrote) and
    let it start again `down` seconds later, the same process on its port, data and cluster configuration.
    (Not SIGKILL and a new child: a child forked by this process, which runs gRPC's threads, died at once.)"""
    admin = aioredis.Redis(port=node.port)
    try:
        with contextlib.suppress(RedisConnectionError):  # it closes the connection instead of answering
            await admin.execute_command("DEBUG", "CRASH-AND-RECOVER", int(down * 1000))
    finally:
        await admin.aclose()
    await asyncio.sleep(down)


async def _asleep(node: EmbeddedRedis, seconds: float) -> None:
    """The node answering nothing for `seconds` (DEBUG SLEEP), then answering again."""
    admin = aioredis.Redis(port=node.port, socket_timeout=seconds + 5)
    try:
        await admin.execute_command("DEBUG", "SLEEP", seconds)
    finally:
        await admin.aclose()


async def _cluster_state(port: int) -> str:
    admin = aioredis.Redis(port=port)
    try:
        info = (await admin.execute_command("CLUSTER", "INFO")).decode()
    finally:
        await admin.aclose()
    return dict(line.split(":", 1) for line in info.splitlines() if ":" in line)["cluster_state"]


async def _until_cluster_ok(cluster: LoopbackCluster) -> None:
    async with asyncio.timeout(CLUSTER_OK_WITHIN):
        while {await _cluster_state(node.port) for node in cluster.nodes} != {"ok"}:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_a_cluster_losing_its_connections_and_a_primary_answers_ok_or_unavailable(drill: Drill) -> None:
    """Under Starts and Verifies: CLIENT KILL on every node, thrice; every node crashed and back; a primary
    crashed, away past the node timeout (CLUSTERDOWN on the others), and back; a primary out of memory; a
    primary silent past the socket timeout. Every answer is OK
    or UNAVAILABLE with RetryInfo; the server logged no unexpected failure; once the cluster is ok every
    user's flow verifies."""
    tally = Tally()
    async with loaded(drill, tally):
        await asyncio.sleep(1.0)
        for _ in range(3):
            await _kill_every_client(drill.cluster)
            await asyncio.sleep(0.5)
        # Every node away at once: the client, learning the slots again, reaches none.
        await asyncio.gather(*(_crash_and_recover(node, down=2.0) for node in drill.cluster.nodes))
        await _until_cluster_ok(drill.cluster)
        await asyncio.sleep(1.0)
        # One primary away past the node timeout: the others say CLUSTERDOWN.
        await _crash_and_recover(drill.cluster.nodes[1], down=3.5)
        await _until_cluster_ok(drill.cluster)
        await asyncio.sleep(1.0)
        # One primary out of memory, then one silent past the server's socket timeout (and the node timeout).
        admin = aioredis.Redis(port=drill.cluster.nodes[0].port)
        try:
            async with out_of_memory(admin):
                await asyncio.sleep(1.5)
        finally:
            await admin.aclose()
        await _asleep(drill.cluster.nodes[2], seconds=3.0)
        await _until_cluster_ok(drill.cluster)
        await asyncio.sleep(1.0)
    log = drill.serving.output()
    assert tally.wrong == [], _unexpected(log)
    assert "failed unexpectedly" not in log, _unexpected(log)
    assert tally.codes["StartChallenge", "UNAVAILABLE"] > 0, tally.codes  # the faults were seen
    assert tally.codes["VerifyChallenge", "OK"] > 0, tally.codes
    assert "(ClusterDownError)" in log  # the other primaries refused while one was failed
    assert "(RedisClusterException)" in log  # no node reached while all were away
    assert "(OutOfMemoryError)" in log
    assert "(TimeoutError)" in log
    # The cluster ok again: each user's next flow verifies (a call or two may still find a stale route).
    assert [n for n in range(USERS) if not await _verifies_again(drill, f"u{n}", tally)] == [], tally.codes
    assert tally.wrong == []


async def _verifies_again(drill: Drill, user_id: str, tally: Tally) -> bool:
    """Whether one of the user's next three flows verifies."""
    for _ in range(3):
        if await _flow(drill, user_id, drill.auth[0], tally):
            return True
    return False


def _unexpected(log: str) -> str:
    """The server's log from its first unexpected failure on (its traceback), for a failed assertion."""
    return log[log.find("failed unexpectedly") - 200 :][:6000]


# --- A slot migrating under calls: TRYAGAIN, ASK, then MOVED ------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """A slot moved from `source` to `target` as `redis-cli --cluster reshard` moves it, step by step."""

    slot: int
    source: aioredis.Redis
    target: aioredis.Redis
    target_port: int

    async def begin(self) -> None:
        source_id = (await self.source.execute_command("CLUSTER", "MYID")).decode()
        await self.target.execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING", source_id)
        await self.source.execute_command(
            "CLUSTER", "SETSLOT", self.slot, "MIGRATING", await self._target_id()
        )

    async def move(self, share: float) -> None:
        """MIGRATE `share` of the keys still on the source to the target."""
        keys = await self.source.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, 100_000)
        moved = keys[: max(1, int(len(keys) * share))]
        await self.source.execute_command(
            "MIGRATE", "127.0.0.1", self.target_port, "", 0, 5000, "KEYS", *moved
        )

    async def end(self) -> None:
        for node in (self.target, self.source):
            await node.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", await self._target_id())

    async def _target_id(self) -> str:
        return str((await self.target.execute_command("CLUSTER", "MYID")).decode())


async def _slot_keys(admins: list[aioredis.Redis], slot: int) -> dict[bytes, object]:
    """Every key of `slot` on every node and its serialised value, so that equal snapshots mean no call wrote
    anything: an outbox by its entries (its consumer group notes every read of the dispatcher's), and without
    the journal's feed (the sealer reads, moves and trims it; each of its entries is a copy of one in a
    journal stream, which the snapshot holds)."""
    outboxes = {outbox.encode() for outbox in Keyspace().outboxes()}
    taken: dict[bytes, object] = {}
    for admin in admins:
        for key in await admin.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100_000):
            if key.endswith((b":feed", b":feed:last")):
                continue
            async with admin.pipeline(transaction=False) as pipe:  # ASKING: an importing node's keys too
                if key in outboxes:
                    pipe.execute_command("ASKING").xrange(key)
                else:
                    pipe.execute_command("ASKING").dump(key)
                taken[key] = (await pipe.execute())[1]
    return taken


@dataclass
class PhaseCalls:
    """A migration phase's calls on the moving slot: reads of a challenge, a burst of them at once (the
    server's client then holds several connections to each node), then a Start and a Verify, each refused
    one checked to have written nothing; what went wrong, by phase."""

    drill: Drill
    admins: list[aioredis.Redis]
    migration: Migration
    tally: Tally
    wrote: list[str] = field(default_factory=list)
    on_both: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)

    async def phase(self, phase: str, challenge_id: str, code: str) -> None:
        auth, slot = self.drill.auth[0], self.migration.slot
        read = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
        for _ in range(2):  # an ASK followed wherever the challenge is, on any of the connections
            answers = await asyncio.gather(
                *(auth.GetChallenge(read, timeout=10) for _ in range(READS)), return_exceptions=True
            )
            self.reads += [f"{phase}: {answer!r}" for answer in answers if isinstance(answer, Exception)]
        calls = {  # called when called: a stub's call starts at once
            "StartChallenge": lambda: auth.StartChallenge(_start("u0"), timeout=10),
            "VerifyChallenge": lambda: auth.VerifyChallenge(_verify(challenge_id, code), timeout=10),
        }
        for rpc, call in calls.items():
            before = await _slot_keys(self.admins, slot)
            try:
                await call()
            except grpc.aio.AioRpcError as error:
                self.tally.refused(rpc, error)
                if await _slot_keys(self.admins, slot) != before:
                    self.wrote.append(f"{rpc} {phase}")
            else:
                self.tally.ok(rpc)
        if both := await _on_both(self.migration.source, self.migration.target, slot):
            self.on_both.append(f"{phase}: {both}")


async def test_a_slot_migrating_under_calls_writes_nothing_half_way_and_moves_without_errors(
    drill: Drill,
) -> None:
    """A user's slot moved to another primary under its calls. While it migrates (keys on the source only,
    then on both, then on the target only) a read of the slot answers OK (an ASK followed: ASKING on the
    command's connection) and each Start and Verify answers OK or UNAVAILABLE with RetryInfo having written
    nothing (no script runs on a migrating slot, decision 0068); no key is ever on both nodes, so every
    MIGRATE takes its keys (BUSYKEY before: a script followed an ASK and wrote a key the target did not own
    yet); once moved (MOVED, and the client learning the slots again) every call answers OK, and each code
    was sent once."""
    user = "u0"  # PhaseCalls' user
    slot = key_slot(Keyspace().user(user).encode())
    admins = [aioredis.Redis(port=node.port) for node in drill.cluster.nodes]
    tally = Tally()
    try:
        opened = []
        for _ in range(3):  # challenges to verify while the slot moves, their SMS sent before
            challenge_id = (await drill.auth[0].StartChallenge(_start(user), timeout=10)).challenge_id
            code = await _code(drill.sms_file, challenge_id, within=10.0)
            assert code is not None
            opened.append((challenge_id, code))
        await _all_sent(drill.auth[0], [challenge_id for challenge_id, _ in opened])
        owner = [await admin.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) for admin in admins]
        source = admins[owner.index(max(owner))]
        target = next(admin for admin in admins if admin is not source)
        migration = Migration(slot, source, target, target.connection_pool.connection_kwargs["port"])
        calls = PhaseCalls(drill, admins, migration, tally)
        await migration.begin()
        await calls.phase("migrating", *opened[0])
        await migration.move(0.5)
        await calls.phase("half moved", *opened[1])
        await migration.move(1.0)
        await calls.phase("all moved", *opened[2])
        await migration.end()
        assert await source.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0  # every key moved
        assert tally.wrong == [], _unexpected(drill.serving.output())
        assert (calls.wrote, calls.on_both, calls.reads) == ([], [], [])
        log = drill.serving.output()
        assert "(ResponseError MIGRATING)" in log  # refused by the scripts' guard, or on an ASK
        # The slot's new primary, found by MOVED: from the first call on, no error (the client learning the
        # slots again closes no connection a call is using).
        after = Tally()
        assert [await _flow(drill, user, drill.auth[0], after) for _ in range(3)] == [True] * 3, after.codes
        assert set(after.codes) == {("StartChallenge", "OK"), ("VerifyChallenge", "OK")}, after.codes
        assert _sent_once(drill.sms_file), "a code sent twice"
    finally:
        for admin in admins:
            await admin.aclose()
    assert "failed unexpectedly" not in drill.serving.output()


async def _on_both(source: aioredis.Redis, target: aioredis.Redis, slot: int) -> set[bytes]:
    """The keys of `slot` on both nodes at once (a MIGRATE of one of them fails BUSYKEY)."""
    keys = [
        set(await node.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100_000))
        for node in (source, target)
    ]
    return keys[0] & keys[1]


def _sent_once(sms_file: Path) -> bool:
    """Whether no challenge's code was written to the SMS file twice."""
    sent = collections.Counter(
        json.loads(line)["challenge_id"] for line in sms_file.read_text(encoding="utf-8").splitlines() if line
    )
    return max(sent.values()) == 1


async def _all_sent(auth: auth_grpc.AuthenticationServiceStub, challenge_ids: list[str]) -> None:
    """Wait (bounded) until each challenge's SMS is recorded as sent: the dispatcher has nothing left to
    write."""
    async with asyncio.timeout(10):
        for challenge_id in challenge_ids:
            request = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
            while (  # noqa: ASYNC110 (the dispatcher's record is Redis's side)
                await auth.GetChallenge(request, timeout=5)
            ).challenge.delivery_state != auth_pb.DELIVERY_STATE_SENT:
                await asyncio.sleep(0.05)


def _start(user_id: str) -> auth_pb.StartChallengeRequest:
    return auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)


def _verify(challenge_id: str, code: str) -> auth_pb.VerifyChallengeRequest:
    return auth_pb.VerifyChallengeRequest(
        challenge_id=challenge_id, code=code, operation=transfer(), context=CONTEXT
    )

"""Redis failing as a fault drill makes it fail, through the real server on a real Redis of the test's own
(decision 0062): out of memory (maxmemory with noeviction), a read-only replica, writes stopped after a
failed snapshot (MISCONF), a script running too long (BUSY), a dataset loading (LOADING), Redis not
answering (DEBUG SLEEP), its scripts flushed (NOSCRIPT), a reply cut half-way.

Every RPC answers OK (a read Redis still serves) or UNAVAILABLE with RetryInfo, never INTERNAL or UNKNOWN;
nothing is half-written (Redis refuses a script at its first write, so a refused step wrote nothing: the
keyspace is the same after the refused calls); each refusal's one log line names the fault, and no code or
full number; and the service answers again by itself once Redis does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.clients.risk_program import compiled
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.dispatch_loop import DispatchSettings
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.risk_rules import default_rules
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live, live_on
from tests.e2e.helpers import (
    CONTEXT,
    PHONE,
    enrolled,
    out_of_memory,
    retry_info,
    sms_count,
    snapshot,
    started,
    transfer,
    verify,
    wrong,
)
from tests.e2e.test_record_replayed import QUEUE_ONLY, script_sha
from tests.fakes.clock import ShiftedClock
from tests.support.outbox import settled
from tests.support.reply_cutter import reply_cutter
from tests.support.wired_server import ServerOptions, start_wired

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

Fault = Callable[[aioredis.Redis], contextlib.AbstractAsyncContextManager[None]]
# The server's socket waits on Redis (RedisState.from_url's default): DEBUG SLEEP outlasts them.
STORE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Drill:
    """The server, and the Redis of the test's own behind it, with an administrator's connection."""

    live: Live
    admin: aioredis.Redis
    redis: EmbeddedRedis
    keystore: Pkcs11KeyStore


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of the test's own (its settings are the drill's to break), DEBUG allowed."""
    with EmbeddedRedis(
        tmp_path / "redis",
        extra_arguments=("--enable-debug-command", "yes", "--enable-protected-configs", "yes"),
    ) as server:
        yield server


@contextlib.asynccontextmanager
async def served(keystore: Pkcs11KeyStore, url: str, sms_file: Path) -> AsyncIterator[Live]:
    """The server as `sesame serve` wires it, on the state store at `url` (its own pool, no blind retry)."""
    store = RedisState.from_url(url, timeout=STORE_TIMEOUT)
    clock = ShiftedClock()
    # No dispatcher beside it: the keyspace read around a call changes by that call alone (`world` sends).
    try:
        async with live_on(
            keystore, store, sms_file, clock, ServerOptions(clock=clock, dispatch=QUEUE_ONLY)
        ) as live:
            yield live
    finally:
        await store.close()


@pytest.fixture
async def drill(keystore: Pkcs11KeyStore, own_redis: EmbeddedRedis, tmp_path: Path) -> AsyncIterator[Drill]:
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        async with served(keystore, own_redis.url, tmp_path / "sms.jsonl") as live:
            yield Drill(live, admin, own_redis, keystore)
    finally:
        await admin.aclose()


# The faults, each made and undone by an administrator's commands on the real Redis.


@contextlib.asynccontextmanager
async def read_only(admin: aioredis.Redis) -> AsyncIterator[None]:
    """A replica of a master that is not there (a failover gone wrong): reads served, writes -READONLY."""
    await admin.execute_command("REPLICAOF", "127.0.0.1", "1")
    try:
        yield
    finally:
        await admin.execute_command("REPLICAOF", "NO", "ONE")


@contextlib.asynccontextmanager
async def disk_error(admin: aioredis.Redis) -> AsyncIterator[None]:
    """A snapshot that failed (its directory not writable) with snapshots configured: writes -MISCONF until
    one succeeds."""
    before = (await admin.config_get("dir"))["dir"]
    await admin.config_set("save", "3600 1")
    await admin.config_set("dir", "/proc")  # not even root creates a file there
    await admin.bgsave()
    await _until(
        admin, lambda info: info["rdb_last_bgsave_status"] == "err" and not info["rdb_bgsave_in_progress"]
    )
    await admin.config_set("dir", before)
    try:
        yield
    finally:
        await admin.bgsave()
        await _until(admin, lambda info: info["rdb_last_bgsave_status"] == "ok")
        await admin.config_set("save", "")


@contextlib.asynccontextmanager
async def busy_script(admin: aioredis.Redis) -> AsyncIterator[None]:
    """A script that never ends (someone's, on another connection): past busy-reply-threshold every other
    command is -BUSY, until SCRIPT KILL."""
    await admin.config_set("busy-reply-threshold", 100)
    looping = _twin(admin)
    spinning = asyncio.create_task(looping.eval("while true do end", 0))
    await asyncio.sleep(0.3)
    try:
        yield
    finally:
        killer = _twin(admin)
        await killer.script_kill()
        with contextlib.suppress(ResponseError):
            await spinning
        await asyncio.gather(killer.aclose(), looping.aclose())
        await admin.config_set("busy-reply-threshold", 5000)


@contextlib.asynccontextmanager
async def loading(admin: aioredis.Redis) -> AsyncIterator[None]:
    """Redis loading its dataset again (DEBUG RELOAD, as after a restart), slowed so that it takes seconds:
    every command meanwhile is -LOADING."""
    async with admin.pipeline(transaction=False) as pipe:
        for n in range(4000):
            pipe.set(f"ballast:{n}", "x")
        await pipe.execute()
    await admin.config_set("key-load-delay", 1000)  # µs per key: ~4 s
    await admin.config_set("loading-process-events-interval-bytes", 1024)  # answers others meanwhile
    reloader = _twin(admin)
    reloading = asyncio.create_task(reloader.execute_command("DEBUG", "RELOAD"))
    await _until(admin, lambda info: info["loading"] == 1)
    try:
        yield
    finally:
        await reloading
        await reloader.aclose()
        await admin.config_set("key-load-delay", 0)
        await admin.delete(*(f"ballast:{n}" for n in range(4000)))


@contextlib.asynccontextmanager
async def asleep(admin: aioredis.Redis) -> AsyncIterator[None]:
    """Redis answering nothing for longer than the server's socket timeout (DEBUG SLEEP)."""
    sleeper = _twin(admin)
    sleeping = asyncio.create_task(sleeper.execute_command("DEBUG", "SLEEP", STORE_TIMEOUT + 1.5))
    await asyncio.sleep(0.2)
    try:
        yield
    finally:
        await sleeping
        await sleeper.aclose()


def _twin(admin: aioredis.Redis) -> aioredis.Redis:
    """Another connection to the same Redis."""
    kwargs = admin.connection_pool.connection_kwargs
    return aioredis.Redis(host=kwargs["host"], port=kwargs["port"])


async def _until(admin: aioredis.Redis, done: Callable[[dict[str, Any]], bool]) -> None:
    """Poll INFO persistence (answered while loading too) until `done`; bounded: 10 s."""
    async with asyncio.timeout(10):
        while not done(await admin.info("persistence")):  # noqa: ASYNC110 (Redis's state, polled)
            await asyncio.sleep(0.02)


# What every RPC is asked during a fault.


@dataclass(frozen=True)
class World:
    """What was there before the fault: an open challenge with its code, another to cancel, a verified one."""

    open_id: str
    code: str
    cancel_id: str
    verified_id: str


async def world(drill: Drill) -> World:
    """The challenges, their SMS sent by a dispatching worker beside the server, and every send recorded."""
    live = drill.live
    dispatching = await start_wired(drill.keystore, live.store, live.sms_file)
    try:
        return await _opened(live)
    finally:
        await dispatching.server.stop(0)


async def _opened(live: Live) -> World:
    await enrolled(live)
    verified_id, verified_code = await started(live, "alice")
    assert (await verify(live, verified_id, verified_code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    cancel_id, _ = await started(live, "alice")
    open_id, code = await started(live, "alice")
    await settled(live.store)
    await sent(live, [verified_id, cancel_id, open_id])  # each send recorded: nothing left to write
    live.clock.advance(timedelta(seconds=31))  # past the resend delay: a Resend would write
    return World(open_id, code, cancel_id, verified_id)


async def sent(live: Live, challenge_ids: list[str]) -> None:
    """Wait (bounded) until the store records each challenge's SMS as sent."""
    async with asyncio.timeout(10):
        for challenge_id in challenge_ids:
            request = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
            while (  # noqa: ASYNC110 (the dispatcher's record is Redis's side)
                await live.auth.GetChallenge(request)
            ).challenge.delivery_state != auth_pb.DELIVERY_STATE_SENT:
                await asyncio.sleep(0.02)


def calls(live: Live, there: World) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Each RPC of the API (called when called: a stub's call starts at once), with a request that succeeds
    when Redis is well, in an order where each still does (reads, then writes; the suspension, which voids
    every challenge, last)."""
    auth, enrol = live.auth, live.enrol
    open_id = there.open_id
    return {
        "GetChallenge": lambda: auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=open_id)),
        "GetProof": lambda: auth.GetProof(auth_pb.GetProofRequest(challenge_id=there.verified_id)),
        "GetUser": lambda: enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice")),
        "EnrollUser": lambda: enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="bob", client_id="acme", secure_phone="+33612345679")
        ),
        "StartChallenge": lambda: auth.StartChallenge(
            auth_pb.StartChallengeRequest(
                user_id="alice", operation=transfer(), context=CONTEXT, request_id="r-1"
            )
        ),
        "ResendChallenge": lambda: auth.ResendChallenge(auth_pb.ResendChallengeRequest(challenge_id=open_id)),
        "VerifyChallenge": lambda: auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=open_id, code=there.code, operation=transfer(), context=CONTEXT
            )
        ),
        "CancelChallenge": lambda: auth.CancelChallenge(
            auth_pb.CancelChallengeRequest(challenge_id=there.cancel_id)
        ),
        "UnblockUser": lambda: enrol.UnblockUser(
            enrol_pb.UnblockUserRequest(user_id="alice", request_id="u-1", actor="ops", reason="drill")
        ),
        "SuspendUser": lambda: enrol.SuspendUser(
            enrol_pb.SuspendUserRequest(user_id="alice", request_id="s-1", actor="ops", reason="drill")
        ),
    }


# RPCs that write: under a fault that refuses writes they are refused, never half done.
WRITES = {
    "EnrollUser",
    "StartChallenge",
    "ResendChallenge",
    "VerifyChallenge",
    "CancelChallenge",
    "SuspendUser",
}


@dataclass(frozen=True)
class Answer:
    """A call's code, whether its refusal carried RetryInfo, whether the keyspace changed across it."""

    code: grpc.StatusCode
    retry: bool = False
    wrote: bool = False


Answers = dict[str, Answer]


async def answers(
    live: Live, there: World, *, together: bool = False, watch: aioredis.Redis | None = None
) -> Answers:
    """Each RPC's answer: one at a time (the keyspace read before and after each, on `watch`), or all at
    once."""

    async def one(call: Callable[[], Awaitable[Any]]) -> Answer:
        before = None if watch is None else await snapshot(watch)
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            wrote = before is not None and await snapshot(watch) != before  # type: ignore[arg-type]
            return Answer(error.code(), retry_info(error), wrote)
        return Answer(grpc.StatusCode.OK)

    asked = calls(live, there)
    if together:
        return dict(zip(asked, await asyncio.gather(*map(one, asked.values())), strict=True))
    return {name: await one(call) for name, call in asked.items()}


def refused(got: Answers) -> set[str]:
    return {rpc for rpc, answer in got.items() if answer.code is grpc.StatusCode.UNAVAILABLE}


def typed(got: Answers) -> None:
    """Every answer OK or UNAVAILABLE, every UNAVAILABLE with RetryInfo, and having written nothing."""
    assert {rpc: answer.code for rpc, answer in got.items() if answer.code not in _FINE} == {}
    assert [rpc for rpc in refused(got) if not got[rpc].retry] == []
    assert [rpc for rpc in refused(got) if got[rpc].wrote] == []


def succeeded(got: Answers) -> dict[str, grpc.StatusCode]:
    """The calls that did not answer OK, and their codes: {} when all did."""
    return {rpc: answer.code for rpc, answer in got.items() if answer.code is not grpc.StatusCode.OK}


_FINE = (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE)


def fault_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The refused calls' log lines."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "sesame.grpc" and " failed: " in record.getMessage()
    ]


EVERY = {
    "GetChallenge",
    "GetProof",
    "GetUser",
    "UnblockUser",
    *WRITES,
}
FAULTS: dict[str, tuple[Fault, str, set[str]]] = {
    # The fault, how the log line names it, the calls it must refuse. Out of memory, Redis refuses a script
    # at its first write that may grow memory unless it wrote already (then it runs to its end, atomic):
    # some writes pass, bounded by the memory they take. Start's and Resend's first write is one Redis
    # refuses, so they cannot grow Redis past maxmemory one after another (decisions 0109, 0111); a Verify
    # runs out of memory, its writes bounded by the challenges open, and so does a suspension, bounded by the
    # user's moves (0111: both answered OK below).
    "oom": (out_of_memory, "OutOfMemoryError", {"EnrollUser", "StartChallenge", "ResendChallenge"}),
    "readonly": (read_only, "ReadOnlyError", WRITES),
    "misconf": (disk_error, "ResponseError MISCONF", WRITES),
    "busy": (busy_script, "ResponseError BUSY", EVERY),
    "loading": (loading, "BusyLoadingError", EVERY),
}


@pytest.mark.parametrize("name", list(FAULTS))
async def test_a_redis_fault_is_unavailable_with_retry_info_and_writes_nothing(
    drill: Drill, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each call under the fault: OK, or UNAVAILABLE with RetryInfo having written nothing (a refused Start
    spent no unit and queued nothing, a refused Verify counted no attempt); one line per refusal naming the
    fault; every call answering again once Redis is well."""
    fault, word, refusals = FAULTS[name]
    live = drill.live
    there = await world(drill)
    before = await snapshot(drill.admin)
    caplog.set_level(logging.INFO)
    caplog.clear()
    async with fault(drill.admin):
        # Where Redis still serves reads, the keyspace is read around each call.
        got = await answers(live, there, watch=None if refusals == EVERY else drill.admin)
        lines = fault_lines(caplog)
    typed(got)
    assert refused(got) >= refusals
    if name == "oom":  # the code sent before memory ran out is decided, a challenge given up closed (0111)
        assert got["VerifyChallenge"].code is grpc.StatusCode.OK
        assert got["CancelChallenge"].code is grpc.StatusCode.OK
        assert got["SuspendUser"].code is grpc.StatusCode.OK  # a stolen phone's codes void at once (0111)
    if refusals == EVERY:  # every call refused: none wrote anything
        after = await snapshot(drill.admin)
        assert {key: value for key, value in after.items() if b"ballast" not in key} == before
    # One line per refused call, naming the fault; no code, no full number.
    assert len(lines) == len(refused(got))
    assert [line for line in lines if f"({word})" not in line] == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert there.code not in logged
    assert PHONE not in logged
    # Redis well again: the service answers by itself.
    if name != "oom":  # (what passed under it, a Verify among them, changed the world)
        assert succeeded(await answers(live, there)) == {}


async def test_scripts_flushed_are_loaded_again_and_every_call_answers(drill: Drill) -> None:
    """SCRIPT FLUSH (a restart, a failover to a replica that never loaded them): every RPC answers OK, the
    server loading each script again at its first NOSCRIPT."""
    there = await world(drill)
    await drill.admin.script_flush()
    assert succeeded(await answers(drill.live, there)) == {}


async def test_redis_not_answering_is_unavailable_and_a_verify_counts_at_most_once(
    drill: Drill, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG SLEEP past the server's socket timeout: every call, all at once, UNAVAILABLE with RetryInfo
    and a line naming the timeout. Redis runs what it had received once awake (documented: ask
    GetChallenge before retrying): the Verify counted once, its answer lost."""
    live = drill.live
    there = await world(drill)
    caplog.set_level(logging.INFO)
    caplog.clear()
    async with asleep(drill.admin):
        got = await answers(live, there, together=True)
        lines = fault_lines(caplog)
    typed(got)
    assert refused(got) == set(got)
    assert len(lines) == len(got)
    assert [line for line in lines if "(TimeoutError)" not in line] == []
    # Redis awake: answering again, the Verify run once at most. Its code is the right one: a Verify that
    # reached Redis before the timeout ran once awake and verified (on the worker's lane every call was
    # written before Redis slept: decision 0063); one that did not left the attempts as they were (whether
    # it came before the suspension, which Redis also ran once awake, is the order they reached it in).
    request = auth_pb.GetChallengeRequest(challenge_id=there.open_id)
    challenge = (await live.auth.GetChallenge(request)).challenge
    if challenge.status != auth_pb.CHALLENGE_STATUS_VERIFIED:
        assert challenge.attempts_left >= ChallengePolicy().max_attempts - 1
    assert (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))).user.user_id == "alice"


async def test_a_reply_cut_half_way_is_unavailable_and_the_verify_counted_once(
    keystore: Pkcs11KeyStore, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """Redis's reply to record_verification.lua cut half-way (the script ran): the Verify is UNAVAILABLE
    with RetryInfo; GetChallenge then says the attempt was counted once, and the next call answers."""
    with reply_cutter(own_redis.port) as cutter:
        async with served(keystore, f"redis://127.0.0.1:{cutter.port}/0", tmp_path / "sms.jsonl") as live:
            dispatching = await start_wired(keystore, live.store, live.sms_file)
            try:
                await enrolled(live)
                challenge_id, code = await started(live, "alice")
            finally:
                await dispatching.server.stop(0)
            admin = aioredis.Redis.from_url(own_redis.url)
            try:
                cutter.arm(script_sha(admin, "record_verification"), keep=0.5)
            finally:
                await admin.aclose()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await verify(live, challenge_id, wrong(code))
            assert cutter.cuts == 1
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            assert retry_info(caught.value)
            got = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
            assert got.challenge.attempts_left == ChallengePolicy().max_attempts - 1
            assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED


async def test_a_start_whose_reply_was_lost_sends_its_code_once_retried(
    keystore: Pkcs11KeyStore, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """open_challenge.lua's reply lost after it ran (the challenge opened, its SMS queued): the Start is
    UNAVAILABLE; the caller retries with its request id and gets that challenge, whose SMS then leaves."""
    sms_file = tmp_path / "sms.jsonl"
    with reply_cutter(own_redis.port) as cutter:
        async with served(keystore, f"redis://127.0.0.1:{cutter.port}/0", sms_file) as live:
            dispatching = await start_wired(keystore, live.store, sms_file)
            try:
                await enrolled(live)
                await started(live, "alice")  # the worker knows alice's number: the concurrent path
                admin = aioredis.Redis.from_url(own_redis.url)
                try:
                    # Start runs open_challenge with the default rules' program in its text (0076).
                    cutter.arm(script_sha(admin, "open_challenge", compiled(default_rules())))
                finally:
                    await admin.aclose()
                request = auth_pb.StartChallengeRequest(
                    user_id="alice", operation=transfer(), context=CONTEXT, request_id="lost-1"
                )
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await live.auth.StartChallenge(request)
                assert cutter.cuts == 1
                assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
                retried = await live.auth.StartChallenge(request)
                await read_code(sms_file, retried.challenge_id)
            finally:
                await dispatching.server.stop(0)


async def test_a_resend_whose_reply_was_lost_sends_its_sms_once_retried(
    keystore: Pkcs11KeyStore, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """record_resend.lua's reply lost after it ran (the resend taken, its SMS queued, its units given back
    by the UNAVAILABLE call): retried with its request id, the Resend answers OK with one resend spent, and
    that SMS leaves: exactly one more SMS handed to the gateway (decision 0065)."""
    sms_file = tmp_path / "sms.jsonl"
    # The dispatcher claims an entry idle for a second: the SMS it found unheld is tried again soon.
    quick = ServerOptions(dispatch=DispatchSettings(claim_idle=timedelta(seconds=1)))
    with reply_cutter(own_redis.port) as cutter:
        async with served(keystore, f"redis://127.0.0.1:{cutter.port}/0", sms_file) as live:
            dispatching = await start_wired(keystore, live.store, sms_file, quick)
            try:
                await enrolled(live)
                challenge_id, _ = await started(live, "alice")
                live.clock.advance(timedelta(seconds=31))  # past the resend delay
                admin = aioredis.Redis.from_url(own_redis.url)
                try:
                    cutter.arm(script_sha(admin, "record_resend"))
                finally:
                    await admin.aclose()
                request = auth_pb.ResendChallengeRequest(
                    challenge_id=challenge_id, context=CONTEXT, request_id="lost-1"
                )
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await live.auth.ResendChallenge(request)
                assert cutter.cuts == 1
                assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
                retried = await live.auth.ResendChallenge(request)
                assert retried.resends_left == ChallengePolicy().max_resends - 1
                async with asyncio.timeout(10):
                    while sms_count(live, challenge_id) < 2:  # noqa: ASYNC110 (the dispatcher's file)
                        await asyncio.sleep(0.05)
                await settled(live.store)
                assert sms_count(live, challenge_id) == 2
                got = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
                assert got.challenge.resends_left == ChallengePolicy().max_resends - 1
            finally:
                await dispatching.server.stop(0)

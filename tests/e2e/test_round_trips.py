"""How many Redis round trips each RPC costs, through the real server (docs/decisions/0019).

Counted where every command leaves the server: the redis-py client the store sends through (the test's
`redis_client`, which the live server's store uses) is wrapped by a counter that passes each command on
unchanged. The store sends no pipeline, so one command is one round trip, a script (EVALSHA) included.
PING is left out: the health watcher sends it on its own clock. The numbers are exact, so that a
regression shows. The server's own metrics count the same round trips where the store funnels them
(`Scripts.call`, `sesame_dependency_duration_seconds{dependency="store"}`, docs/decisions/0026): both counts
must agree, so no command leaves the store unmetered. The last test counts the requests Redis itself reads
during one Start, and holds docs/benchmarks.md's figure to it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_lane import lane_of
from sesame.clients.redis_risk import memory_parts
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.dispatch_loop import DispatchSettings
from tests.e2e.conftest import Live, live_with_sim_swap
from tests.e2e.helpers import CONTEXT, enrolled, started, transfer, verify, wrong
from tests.support.camara_sim_swap import Operator
from tests.support.risk_reads import RedisRiskReads

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


class Sent(Counter[str]):
    """Commands by name; and for each script call, its keys' hash slots and how many commands were in flight
    when it left (2: it was sent while another was still waiting for its answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[frozenset[int], frozenset[str], int]] = []
        self.in_flight = 0

    def clear(self) -> None:
        super().clear()
        self.scripts.clear()


def tags(keys: list[bytes | str]) -> frozenset[str]:
    """The hash tags of script keys (`{sb}`, `{u:<t>}`, `{outbox}`)."""
    return frozenset(
        re.findall(r"\{[^}]*\}", " ".join(k.decode() if isinstance(k, bytes) else k for k in keys))
    )


@pytest.fixture
def sent(redis_client: aioredis.Redis) -> Iterator[Sent]:
    """The commands the client sends from now on, by name (PING left out), whether through its pool or its
    lane (the scripts: decision 0063); reset it with `.clear()`."""
    counted = Sent()

    def counter(send: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counting(*args: Any, **options: Any) -> Any:
            name = str(args[0]).lower()
            if name == "ping":
                return await send(*args, **options)
            counted[name] += 1
            counted.in_flight += 1
            if name == "evalsha":
                keys = list(args[3 : 3 + int(args[2])])
                slots = frozenset(key_slot(k.encode() if isinstance(k, str) else k) for k in keys)
                counted.scripts.append((slots, tags(keys), counted.in_flight))
            try:
                return await send(*args, **options)
            finally:
                counted.in_flight -= 1

        return counting

    lane = lane_of(redis_client)
    redis_client.execute_command = counter(redis_client.execute_command)  # type: ignore[method-assign]
    lane.call = counter(lane.call)  # type: ignore[method-assign]
    yield counted
    del redis_client.execute_command
    del lane.call


def store_calls(live: Live) -> Counter[str]:
    """How many Redis round trips the server has timed at its store's funnel so far, by call."""
    counted: Counter[str] = Counter()
    for family in live.metrics.registry.collect():
        for sample in family.samples:
            if (
                sample.name == "sesame_dependency_duration_seconds_count"
                and sample.labels["dependency"] == "store"
            ):
                counted[sample.labels["call"]] += int(sample.value)
    return counted


async def warm(live: Live) -> str:
    """Enrol a user and run one flow of each kind, so that every script is loaded (no NOSCRIPT retry): a
    transfer's Start runs the script with the rules' program in its text, a login's the one without
    (decision 0076), each its own SHA-1."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, wrong(code))
    await verify(live, challenge_id, code)
    login = op_pb.Operation(login=op_pb.Login())
    challenge_id, code = await started(live, user_id, login)
    await verify(live, challenge_id, code, login)
    return user_id


async def test_verify_is_one_round_trip_proof_and_risk_memory_included(live: Live, sent: Sent) -> None:
    """A wrong code: one script; the proof is named by the decision and signed after it, with no second write
    (docs/decisions/0026); a right code feeds the user's risk memory in the same script (decision 0032)."""
    user_id = await warm(live)
    challenge_id, code = await started(live, user_id)
    sent.clear()
    before = store_calls(live)
    assert (await verify(live, challenge_id, wrong(code))).result == auth_pb.VERIFY_RESULT_WRONG_CODE
    assert sent == Counter(evalsha=1)
    sent.clear()
    reply = await verify(live, challenge_id, code)
    assert (reply.result, bool(reply.proof)) == (auth_pb.VERIFY_RESULT_VERIFIED, True)
    assert sent == Counter(evalsha=1)
    sent.clear()
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_ALREADY_USED
    assert sent == Counter(evalsha=1)
    assert store_calls(live) - before == Counter(record_verification=3)


async def test_a_right_code_feeds_the_risk_memory_in_its_one_step(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The payee a right code paid is in the user's risk memory once Verify answers (no script after it)."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    found = await RedisRiskReads(redis_client, live.store).history(user_id)
    assert len(found.payees_paid) == 1
    assert [currency for currency, _ in found.amounts] == ["EUR"]


async def test_get_challenge_is_one_round_trip(live: Live, sent: Sent) -> None:
    """GetChallenge reads the challenge's hash once."""
    user_id = await warm(live)
    challenge_id, _ = await started(live, user_id)
    sent.clear()
    before = store_calls(live)
    await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    assert sent == Counter(hgetall=1)
    assert store_calls(live) - before == Counter(get_challenge=1)


def step_then_take(sent: Sent) -> bool:
    """A worker's first Start of a user (decision 0054): the step, which answers the number, then one take of
    the number's, caller's and global units (the `{sb}` slot alone), sent after the step's answer."""
    step, take = sent.scripts
    return "{sb}" not in step[1] and take[1] == {"{sb}"} and (step[2], take[2]) == (1, 1)


def concurrent_step_and_take(sent: Sent) -> bool:
    """Start's two scripts: the step (the user's slot, and the outbox's: no send budget of `{sb}`) and the
    take of the number's, caller's and global units (the `{sb}` slot alone), one sent while the other was
    in flight (decision 0046)."""
    step, take = sorted(sent.scripts, key=lambda script: "{sb}" in script[1])
    return "{sb}" not in step[1] and take[1] == {"{sb}"} and len(take[0]) == 1 and max(step[2], take[2]) == 2


async def test_start_is_two_concurrent_scripts_for_a_login_and_for_a_transfer(
    live: Live, sent: Sent, redis_client: aioredis.Redis
) -> None:
    """One script reads the user, claims the request id, charges the user's unit, opens, journals and queues
    the SMS; a request id costs nothing more (decision 0025); the number's, caller's and global units are
    held by a second script on their own `{sb}` slot, sent at once: one round trip of latency, two scripts
    (decision 0046). The first Start of a user on a worker, which does not know the number yet, sends the
    step, then the take of all three units once the step named the number: two scripts in sequence
    (decision 0054; three before: the take with the step, and the number's after it). For a transfer the
    step reads the user's risk memory and applies the rules to it (decision 0045): a Start after the memory
    moved behind the worker's back (another worker's verification) or after a right code costs the same.
    The dispatcher's reads and its spending of the units go through a client of its own."""
    await warm(live)  # scripts loaded once, on another user, so that no NOSCRIPT retry is counted
    user_id = await enrolled(live, "bob")
    sent.clear()
    before = store_calls(live)
    first, code = await started(live, user_id)
    # The first call for this user on this worker: the step, then the take with the number it answered.
    assert sent == Counter(evalsha=2)
    assert store_calls(live) - before == Counter(open_challenge=1, take_send_units=1)
    assert step_then_take(sent)
    sent.clear()
    await started(live, user_id)
    assert sent == Counter(evalsha=2)
    assert concurrent_step_and_take(sent)
    assert (await verify(live, first, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    sent.clear()
    await started(live, user_id)
    assert sent == Counter(evalsha=2)  # after a right code
    # Another worker's verification feeds the memory behind this worker's back.
    await redis_client.zadd(memory_parts(live.store.keys, user_id)[4], {"login:elsewhere": 1})
    sent.clear()
    before = store_calls(live)
    await started(live, user_id)
    assert sent == Counter(evalsha=2)
    assert store_calls(live) - before == Counter(open_challenge=1, take_send_units=1)
    assert concurrent_step_and_take(sent)
    sent.clear()
    await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id=user_id, operation=transfer(), context=CONTEXT, request_id="rt-1"
        )
    )
    assert sent == Counter(evalsha=2)
    sent.clear()
    before = store_calls(live)
    await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id=user_id,
            operation=op_pb.Operation(login=op_pb.Login()),
            context=CONTEXT,
            request_id="rt-2",
        )
    )
    assert sent == Counter(evalsha=2)
    assert store_calls(live) - before == Counter(open_challenge=1, take_send_units=1)
    assert concurrent_step_and_take(sent)


async def test_a_cold_sensitive_start_and_one_after_another_workers_change_are_one_round_trip(
    live: Live, other_worker: Live, sent: Sent, redis_client: aioredis.Redis
) -> None:
    """The rules add no round trip to Start (issue 10): a user's first transfer on a worker that never saw
    the user is one script, and so is a transfer on that worker after another worker's right code fed the
    user's memory (two workers on one Redis; decision 0045). The second is decided on the fed memory."""
    await warm(live)
    await warm(other_worker)  # both workers' scripts loaded (EVALSHA's cache is Redis's, but be plain)
    user_id = await enrolled(live, "carol")
    sent.clear()
    before = store_calls(live)
    first, _ = await started(live, user_id)
    assert sent == Counter(evalsha=2)  # the step, then the take with the number it answered (0054)
    assert store_calls(live) - before == Counter(open_challenge=1, take_send_units=1)
    assert step_then_take(sent)
    other, other_code = await started(other_worker, user_id)
    assert (await verify(other_worker, other, other_code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    fed = await RedisRiskReads(redis_client, live.store).history(user_id)
    assert len(fed.payees_paid) == 1  # what the next Start's step reads
    sent.clear()
    before = store_calls(live)
    await started(live, user_id)
    assert sent == Counter(evalsha=2)
    assert store_calls(live) - before == Counter(open_challenge=1, take_send_units=1)
    assert concurrent_step_and_take(sent)
    assert first != other


async def test_with_an_operator_a_workers_first_sensitive_start_asks_the_step_for_the_number(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, operator: Operator
) -> None:
    """With a SIM-swap operator configured, the operator is asked about the user's number before the step:
    a worker that never saw the user has none, so its first sensitive Start costs one step more (the step
    answers the number, decision 0045); the next Start asks about the number the worker saw: one step."""
    async with live_with_sim_swap(redis_store, keystore, tmp_path, operator, wait=0.3) as live:
        await warm(live)
        user_id = await enrolled(live, "dave")
        before = store_calls(live)
        await started(live, user_id)
        assert store_calls(live) - before == Counter(open_challenge=2, take_send_units=1)
        before = store_calls(live)
        await started(live, user_id)
        assert store_calls(live) - before == Counter(open_challenge=1, take_send_units=1)


BENCHMARKS_MD = Path(__file__).parents[2] / "docs" / "benchmarks.md"
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}


def documented_round_trips() -> int:
    """The figure of docs/benchmarks.md's "Start makes N Redis round trip(s)"."""
    found = re.search(r"Start makes (\w+) Redis round trips?", BENCHMARKS_MD.read_text(encoding="utf-8"))
    assert found is not None
    return NUMBERS[found.group(1)]


async def counters(client: aioredis.Redis) -> tuple[int, int]:
    """Requests read by the server so far, and PINGs among them (a health probe is no part of a Start)."""
    stats = await client.info("stats")
    pings = (await client.info("commandstats")).get("cmdstat_ping", {}).get("calls", 0)
    return int(stats["total_reads_processed"]), int(pings)


async def start(live: Live, user_id: str) -> None:
    await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
    )


@pytest.mark.parametrize("dispatch", [DispatchSettings(loops=0)])
async def test_one_start_makes_the_round_trips_the_benchmarks_state(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The requests Redis reads during one Start (scripts already loaded) are docs/benchmarks.md's count.

    No dispatcher runs: Redis counts every client's requests, and the SMS is sent off the call's path."""
    user_id = await enrolled(live)
    await start(live, user_id)  # loads the Lua scripts: a first use costs a NOSCRIPT and a SCRIPT LOAD more
    # A worker's first Start of a user sends its two scripts one after the other (decision 0054); the next
    # ones, their two at once, in one write on the store's lane (decision 0063).
    await start(live, user_id)
    reads_before, pings_before = await counters(redis_client)
    await start(live, user_id)
    reads_after, pings_after = await counters(redis_client)
    # Each counters() call is two requests, read before INFO answers: the second call's two are counted.
    round_trips = reads_after - reads_before - 2 - (pings_after - pings_before)
    assert round_trips == documented_round_trips()

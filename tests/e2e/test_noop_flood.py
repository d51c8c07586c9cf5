"""Back-office calls that change nothing, repeated by the thousand with new request ids: each journaled one
entry, and each request id stayed in the user's applied request ids (`changes:<user>`) for ever, so Redis
grew by one journal entry and one hash field per call. The first 20 no-ops of a user's hour are journaled,
later ones counted and the count sealed with the next one journaled; a no-op's request id is remembered for
24 hours, 64 of a user at most (decision 0054), none forgotten for a newer one (decision 0150). Through the
real server and Redis."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, quota

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NOOPS_JOURNALED_PER_HOUR = 20  # SESAME_NOOPS_JOURNALED_PER_HOUR's default (_noops.lua's argument)
NOOP_IDS_KEPT = 64  # SESAME_NOOP_IDS_KEPT's default
REPEATS = 2_000
AT_ONCE = 50


async def _suspend(live: Live, request_id: str) -> None:
    await live.enrol.SuspendUser(
        enrol_pb.SuspendUserRequest(user_id="alice", request_id=request_id, actor="ops", reason="vol")
    )


async def _unblock(live: Live, request_id: str) -> None:
    await live.enrol.UnblockUser(
        enrol_pb.UnblockUserRequest(user_id="alice", request_id=request_id, actor="ops", reason="call")
    )


async def _reinstate(live: Live, request_id: str) -> enrol_pb.ReinstateUserResponse:
    reply: enrol_pb.ReinstateUserResponse = await live.enrol.ReinstateUser(
        enrol_pb.ReinstateUserRequest(user_id="alice", request_id=request_id, actor="ops", reason="found")
    )
    return reply


async def _repeated(live: Live, first: int, last: int) -> int:
    """The no-ops `first` .. `last - 1`, AT_ONCE at a time, alternating a suspension of the suspended user
    and an unblock with nothing to lift, each under a new request id; how many were answered. An unblock
    without room left for its id is refused RESOURCE_EXHAUSTED (decision 0150), a suspension answered."""

    async def noop(n: int) -> bool:
        if n % 2:
            await _suspend(live, f"noop-{n}")
            return True
        try:
            await _unblock(live, f"noop-{n}")
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            return False
        return True

    answered = 0
    for start in range(first, last, AT_ONCE):
        calls = range(start, min(start + AT_ONCE, last))
        answered += sum(await asyncio.gather(*(noop(n) for n in calls)))
    return answered


async def _footprint(client: aioredis.Redis) -> tuple[int, int]:
    """The user's keys and the bytes they hold (MEMORY USAGE summed): the journal's sealer, which runs
    beside, writes keys of its own."""
    keys = [key async for key in client.scan_iter(match="*alice*", count=1000)]
    sizes = [await client.memory_usage(key, samples=0) or 0 for key in keys]
    return len(keys), sum(sizes)


async def test_a_noop_repeated_two_thousand_times_does_not_grow_redis(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """After the first 100 no-ops, 1,900 more: the same keys, no more bytes than a few fields' worth, the
    user's journal holds the hour's 20; the request ids remembered are the first 64 (a retry of the first is
    answered; later suspensions are answered unremembered, later unblocks refused); an hour later the next
    no-op is journaled with the count before it."""
    await enrolled(live)
    await _suspend(live, "stolen")  # the real change: journaled, its request id kept
    answered = await _repeated(live, 0, 100)
    keys_before, bytes_before = await _footprint(redis_client)
    journal_before = len(await live.store.users.user_journal("alice"))
    answered += await _repeated(live, 100, REPEATS)
    keys_after, bytes_after = await _footprint(redis_client)
    journal = await live.store.users.user_journal("alice")
    assert len(journal) == journal_before == 2 + NOOPS_JOURNALED_PER_HOUR  # enrolment, suspension, 20 no-ops
    assert keys_after == keys_before
    assert bytes_after <= bytes_before + 4096
    changes = live.store.keys.user_changes("alice")
    assert await redis_client.hlen(changes) == 1 + NOOP_IDS_KEPT
    assert await redis_client.hget(changes, "stolen") is not None
    assert await redis_client.hget(changes, "noop-0") is not None
    assert await redis_client.hget(changes, f"noop-{REPEATS - 1}") is None
    assert answered == NOOP_IDS_KEPT + (REPEATS - NOOP_IDS_KEPT) // 2  # every suspension, 32 unblocks
    await _unblock(live, "noop-0")  # a retry of the first: answered, nothing written
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the same id for another call: still refused
        await _suspend(live, "noop-0")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    live.clock.advance(timedelta(hours=1))
    await _suspend(live, "an-hour-later")
    latest = (await live.store.users.user_journal("alice"))[-1]
    assert (latest["event"], latest["outcome"]) == ("user.suspend", "unchanged")
    assert latest["unjournaled_before"] == str(answered - NOOPS_JOURNALED_PER_HOUR)


async def test_a_stale_reinstatement_retried_after_many_noops_does_not_lift_a_later_suspension(
    live: Live,
) -> None:
    """Found by an outside audit: a ReinstateUser that changed nothing (the user active), then the phone
    reported stolen (SuspendUser), then 64 more reports of it (each a no-op under a new id), then the first
    reinstatement retried: its id had been forgotten for the newer no-ops', the retry was taken as a new
    call, and the stolen phone's user was ACTIVE again. Now no no-op's id is forgotten for a newer one:
    the retry is answered as before and the user stays SUSPENDED; once no room is left, a reinstatement that
    would change nothing is refused RESOURCE_EXHAUSTED, its wait in RetryInfo, and a suspension is still
    answered (decision 0150)."""
    await enrolled(live)
    assert (await _reinstate(live, "found")).user.status == enrol_pb.USER_STATUS_ACTIVE  # changed nothing
    await _suspend(live, "stolen")
    for n in range(NOOP_IDS_KEPT):
        await _suspend(live, f"again-{n}")
    retried = await _reinstate(live, "found")
    assert retried.user.status == enrol_pb.USER_STATUS_SUSPENDED
    await _reinstate(live, "recovered")  # a real reinstatement, under a new id: the user is active again
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _reinstate(live, "found-again")  # would change nothing, and no room is left for its id
    subjects, wait = quota(caught.value)
    assert subjects == ["user"]
    assert timedelta(hours=23) < wait <= timedelta(hours=24)
    await _suspend(live, "stolen-again")  # a real suspension: always taken
    await _suspend(live, "stolen-once-more")  # a no-op suspension without room: answered all the same
    assert (await live.store.users.get_user("alice")).status.value == "suspended"


async def test_a_termination_retried_five_hundred_times_does_not_grow_the_clients_journal(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """TerminateClient of a terminated client, retried 500 times with its request id (a retry loop): the
    client's journal holds the termination and the hour's first 20 `unchanged`, not 500 entries (each
    retry still finishes the run: its user stays revoked). Found from outside: one entry per call, for
    ever, in Redis and in the archive."""
    await enrolled(live)
    request = enrol_pb.TerminateClientRequest(client_id="acme", request_id="t-1", actor="ops", reason="fin")
    assert (await live.enrol.TerminateClient(request)).revoked_users == 1
    for _ in range(500 // AT_ONCE):
        answers = await asyncio.gather(*(live.enrol.TerminateClient(request) for _ in range(AT_ONCE)))
        assert {answer.revoked_users for answer in answers} == {1}
    journal = await live.store.clients.client_journal("acme")
    assert [entry["outcome"] for entry in journal].count("terminated") == 1
    assert len(journal) == 1 + NOOPS_JOURNALED_PER_HOUR
    assert await redis_client.xlen(live.store.keys.client_journal("acme")) <= 1 + NOOPS_JOURNALED_PER_HOUR

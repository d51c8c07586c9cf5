"""A worker whose clock is off Redis's refuses every call until it is back in step (decision 0104).

An outside audit (session 29) ran two servers on one Redis with their clocks apart: a worker 10 minutes behind
verified a code 12 minutes old, and the evidence bundle said so without a flaw; a worker ahead lifted a
15-minute block early by the gap. Each health round now compares the worker's clock with Redis's TIME: off by
more than 30 s, health says NOT_SERVING and every call is refused UNAVAILABLE, with nothing done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.dispatch_loop import DispatchSettings
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live
from tests.e2e.helpers import (
    CONTEXT,
    counted,
    enrolled,
    precondition,
    retry_info,
    sms_count,
    snapshot,
    started,
    transfer,
    verify,
    wrong,
)
from tests.support.wired_server import ServerOptions, start_wired

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_becomes(live: Live, status: int) -> None:
    """Return once the server's own health reads `status` (a round a second: within 5 s)."""
    stub = health_pb2_grpc.HealthStub(live.channel)
    for _ in range(100):
        if (await stub.Check(health_pb2.HealthCheckRequest())).status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health never read {status}")


def reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a refusal's rich status."""
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in status_pb2.Status.FromString(raw).details)
    return str(info.reason)


async def refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error `call` fails with."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_a_worker_10_minutes_behind_verifies_no_code_12_minutes_old(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The audit's case: the code opened 12 minutes ago (5 minutes of life) by a worker in step; this worker's
    clock then reads 10 minutes behind. Its Verify is refused and counts nothing; back in step, the code is
    EXPIRED."""
    await enrolled(live)
    challenge_id, code = await started(live, "alice")
    live.clock.advance(timedelta(minutes=12))  # for everyone, Redis's clock included
    live.clock.skew(timedelta(minutes=-10))  # this worker's alone
    await health_becomes(live, NOT_SERVING)
    before = await snapshot(redis_client)
    error = await refused(verify(live, challenge_id, code))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert reason(error) == "CLOCK_OUT_OF_STEP"
    assert retry_info(error)
    assert await snapshot(redis_client) == before  # no attempt counted, nothing journaled
    labels = {"method": "VerifyChallenge"}
    assert await counted(live.metrics.registry, "sesame_rpc_clock_refused_total", labels) == 1
    offset = live.metrics.registry.get_sample_value("sesame_clock_offset_seconds")
    assert offset is not None
    assert -601 < offset < -599
    live.clock.skew(timedelta(minutes=10))
    await health_becomes(live, SERVING)
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_EXPIRED


@pytest.mark.parametrize("skew", [timedelta(seconds=-45), timedelta(seconds=45)])
async def test_every_call_is_refused_beyond_the_tolerance_either_way(live: Live, skew: timedelta) -> None:
    """Behind or ahead; reads and lifecycle calls too: any of them may decide by the worker's clock."""
    await enrolled(live)
    live.clock.skew(skew)
    await health_becomes(live, NOT_SERVING)
    start = live.auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="alice", operation=transfer()))
    read = live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))
    for call in (start, read):
        error = await refused(call)
        assert (error.code(), reason(error)) == (grpc.StatusCode.UNAVAILABLE, "CLOCK_OUT_OF_STEP")


async def test_a_worker_ahead_does_not_lift_a_block_early(live: Live) -> None:
    """Five wrong codes block the user 15 minutes; 10 minutes later a worker 6 minutes ahead, which would read
    the block as over, refuses the call instead; in step, the user is still blocked."""
    await enrolled(live)
    for wrong_codes in (3, 2):
        challenge_id, code = await started(live, "alice")
        for _ in range(wrong_codes):
            await verify(live, challenge_id, wrong(code))
    live.clock.advance(timedelta(minutes=10))
    live.clock.skew(timedelta(minutes=6))
    await health_becomes(live, NOT_SERVING)
    request = auth_pb.StartChallengeRequest(user_id="alice", operation=transfer(), context=CONTEXT)
    assert reason(await refused(live.auth.StartChallenge(request))) == "CLOCK_OUT_OF_STEP"
    live.clock.skew(timedelta(minutes=-6))
    await health_becomes(live, SERVING)
    assert precondition(await refused(live.auth.StartChallenge(request))) == "USER_BLOCKED"


async def test_a_worker_within_the_tolerance_serves(live: Live) -> None:
    """20 s off is within what the pending index and the voiding allow for: served."""
    await enrolled(live)
    live.clock.skew(timedelta(seconds=-20))
    await asyncio.sleep(1.5)  # a round ran with the skew
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED


async def test_a_dispatcher_out_of_step_leaves_the_sms_in_the_outbox(
    live: Live, keystore: Pkcs11KeyStore
) -> None:
    """A worker 10 minutes ahead read every queued code as expired and dead-lettered it, never sent: its
    dispatch loops take nothing while its clock is out of step; back in step, the SMS leaves and verifies.
    The code is opened by a worker in step with no dispatch loop of its own."""
    options = ServerOptions(dispatch=DispatchSettings(loops=0))
    opener = await start_wired(keystore, live.store, live.sms_file, options)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{opener.server.port}")
    try:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        await enrolled(live)
        live.clock.skew(timedelta(minutes=10))
        await health_becomes(live, NOT_SERVING)
        # Past a take begun in step (it waits half a second): an SMS taken then is left pending, for a
        # dispatcher in step to claim once idle (30 s), not sent at once.
        await asyncio.sleep(1)
        request = auth_pb.StartChallengeRequest(user_id="alice", operation=transfer(), context=CONTEXT)
        challenge_id = (await auth.StartChallenge(request)).challenge_id
        await asyncio.sleep(2)  # the live worker's loops poll every half second
        assert sms_count(live, challenge_id) == 0
        dead = live.metrics.registry.get_sample_value("sesame_sms_dead_letters_total", {"reason": "expired"})
        assert not dead
        live.clock.skew(timedelta(minutes=-10))
        await health_becomes(live, SERVING)
        _, code = await read_code(live.sms_file, challenge_id)
        verified = await auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=challenge_id, code=code, operation=transfer(), context=CONTEXT
            )
        )
        assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED
    finally:
        await channel.close()
        await opener.server.stop(0)

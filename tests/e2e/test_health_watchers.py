"""Health.Watch needs no grant (probes hold none) and each stream it keeps open holds tens of KiB of the
server's memory until the caller leaves: the number of streams a server keeps is bounded, beyond which a
Watch is refused RESOURCE_EXHAUSTED at once (a probe that polls with Check is never refused)."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.server.grpc.health_watchers import MAX_WATCHERS
from tests.e2e.conftest import Live

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHANNELS = 16  # a connection carries a bounded number of concurrent streams: spread them as callers would


async def test_watch_streams_beyond_the_bound_are_refused_and_check_still_answers(live: Live) -> None:
    """MAX_WATCHERS streams each get SERVING; one more is RESOURCE_EXHAUSTED; once one leaves, one more is
    let in; Check answers SERVING throughout."""
    # A connection each: channels to one address otherwise share one connection, which carries at most
    # MAX_STREAMS_PER_CONNECTION streams at once (decision 0055).
    own = (("grpc.use_local_subchannel_pool", 1),)
    channels = [grpc.aio.insecure_channel(live.address, options=own) for _ in range(CHANNELS)]
    stubs = [health_pb2_grpc.HealthStub(channel) for channel in channels]
    watching = [
        stubs[n % CHANNELS].Watch(health_pb2.HealthCheckRequest(), timeout=60) for n in range(MAX_WATCHERS)
    ]
    try:
        for call in watching:
            assert (await call.read()).status == health_pb2.HealthCheckResponse.SERVING
        extra = stubs[0].Watch(health_pb2.HealthCheckRequest(), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await extra.read()
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        checked = await stubs[1].Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        watching.pop().cancel()
        watching.append(await _let_in(stubs[2]))
    finally:
        for call in watching:
            call.cancel()
        for channel in channels:
            await channel.close()


async def _let_in(stub: health_pb2_grpc.HealthStub) -> grpc.aio.UnaryStreamCall:  # type: ignore[type-arg]
    """A Watch let in once a stream has left (the server sees a cancelled stream leave a moment later)."""
    for _ in range(50):
        call = stub.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as error:
            refused = error.code()
        else:
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            return call
        assert refused is grpc.StatusCode.RESOURCE_EXHAUSTED
    pytest.fail("no Watch let in after one left")

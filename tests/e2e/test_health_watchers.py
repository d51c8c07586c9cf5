"""Health.Watch needs no grant (probes hold none) and each stream it keeps open holds tens of KiB of the
server's memory until the caller leaves: the number of streams a server keeps is bounded, beyond which a
Watch is refused RESOURCE_EXHAUSTED at once (a probe that polls with Check is never refused)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.config import Settings
from sesame.server.grpc.health_watchers import MAX_WATCHERS
from sesame.server.grpc.server import GrpcServer
from tests.e2e.conftest import Live
from tests.support.wired_server import ServerOptions, start_wired

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


@pytest.fixture
async def probed(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path
) -> AsyncIterator[GrpcServer]:
    """The composition root's wiring with a health-only listener beside the gRPC port."""
    transport = Settings.from_env({"SESAME_HEALTH_ADDR": "127.0.0.1:0"}).transport
    wired = await start_wired(
        keystore, redis_store, tmp_path / "sms.jsonl", ServerOptions(transport=transport)
    )
    try:
        yield wired.server
    finally:
        await wired.server.stop(0)


async def _watching(address: str, count: int) -> tuple[list[grpc.aio.Channel], list[Any]]:
    """`count` Watch streams on `address`, each past its first status (SERVING)."""
    own = (("grpc.use_local_subchannel_pool", 1),)
    channels = [grpc.aio.insecure_channel(address, options=own) for _ in range(CHANNELS)]
    stubs = [health_pb2_grpc.HealthStub(channel) for channel in channels]
    calls = [stubs[n % CHANNELS].Watch(health_pb2.HealthCheckRequest(), timeout=60) for n in range(count)]
    for call in calls:
        assert (await call.read()).status == health_pb2.HealthCheckResponse.SERVING
    return channels, calls


async def test_the_health_only_port_cannot_take_the_grpc_ports_watch_streams(
    probed: GrpcServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by an outside audit: the health-only listener (no certificate) shared the bound with the gRPC
    port, so 2,000 streams opened there refused every caller's Watch, and each refusal was a WARNING (750 a
    second). Each listener has its bound (decision 0159), and its refusals are one line a minute."""
    assert probed.health_port is not None
    health_only = f"127.0.0.1:{probed.health_port}"
    channels, calls = await _watching(health_only, MAX_WATCHERS)
    try:
        with caplog.at_level(logging.WARNING, logger="sesame.health"):
            for _ in range(3):
                refused = health_pb2_grpc.HealthStub(channels[0]).Watch(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await refused.read()
                assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        said = [r.getMessage() for r in caplog.records if "Watch refused" in r.getMessage()]
        assert said == [f"health Watch refused on the health-only port: {MAX_WATCHERS} streams open already"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{probed.port}") as caller:
            watch = health_pb2_grpc.HealthStub(caller).Watch(health_pb2.HealthCheckRequest(), timeout=10)
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()


async def test_watch_streams_on_the_grpc_port_are_counted(live: Live) -> None:
    """Found by an outside audit: 2,000 Watch streams on the gRPC port moved no metric (Check is counted,
    and the health-only port counts its Watches). Each stream is counted in sesame_rpc_requests_total by the
    code it ended with, and not timed (a stream lasts as long as its caller holds it)."""
    stub = health_pb2_grpc.HealthStub(live.channel)
    for _ in range(3):
        call = stub.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert (await call.read()).status == health_pb2.HealthCheckResponse.SERVING
        call.cancel()
    labels = {"method": "Watch", "code": "CANCELLED"}
    registry = live.metrics.registry
    for _ in range(100):  # counted as the server sees each stream leave, a moment after the cancel
        if registry.get_sample_value("sesame_rpc_requests_total", labels) == 3:
            break
        await asyncio.sleep(0.02)
    assert registry.get_sample_value("sesame_rpc_requests_total", labels) == 3
    timed = live.metrics.registry.get_sample_value("sesame_rpc_duration_seconds_count", {"method": "Watch"})
    assert timed is None

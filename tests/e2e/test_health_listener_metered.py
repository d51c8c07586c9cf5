"""The health-only listener's calls are counted, apart from the gRPC port's, by a bounded method and code.

SESAME_HEALTH_ADDR serves grpc.health.v1 in plaintext to any peer of the probes' network; its Checks, its
undecodable requests and its calls to methods it does not have appeared in no metric. They are counted in
sesame_health_listener_requests_total{method, code} (decision 0114), not in sesame_rpc_requests_total:
the probes' Checks, a few a second per balancer, would drown the API's rates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.config import Settings
from sesame.server.grpc.server import GrpcServer
from sesame.server.metrics import Metrics
from tests.support.http2 import DATA, END_STREAM, drained, frame, grpc_message, long_headers, unacknowledged
from tests.support.pki import Pki
from tests.support.wired_server import ServerOptions, start_wired

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

COUNTER = "sesame_health_listener_requests_total"
# Field 31 with wire type 7, which does not exist: no message parses it.
_BAD_WIRE = b"\xff\x01"


@dataclass
class Probed:
    server: GrpcServer
    metrics: Metrics

    def counted(self, method: str, code: str) -> float | None:
        return self.metrics.registry.get_sample_value(COUNTER, {"method": method, "code": code})

    def rpc_requests(self) -> float:
        """Every call the gRPC port counted (sesame_rpc_requests_total, all methods and codes)."""
        return sum(
            sample.value
            for family in self.metrics.registry.collect()
            if family.name == "sesame_rpc_requests"
            for sample in family.samples
            if sample.name.endswith("_total")
        )


@pytest.fixture
async def probed(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, pki: Pki
) -> AsyncIterator[Probed]:
    """The composition root's wiring behind mTLS with a plaintext health-only listener."""
    transport = Settings.from_env({**pki.env, "SESAME_HEALTH_ADDR": "127.0.0.1:0"}).transport
    wired = await start_wired(
        keystore, redis_store, tmp_path / "sms.jsonl", ServerOptions(transport=transport)
    )
    try:
        yield Probed(wired.server, wired.running.metrics)
    finally:
        await wired.server.stop(0)


async def _until(check: object, probed: Probed, method: str, code: str, value: float) -> None:
    """Wait, at most 2 s, until the count of (`method`, `code`) is `value` (counted as the call ends)."""
    for _ in range(200):
        if probed.counted(method, code) == value:
            return
        await asyncio.sleep(0.01)
    assert (check, probed.counted(method, code)) == (check, value)


async def test_the_listeners_checks_refusals_and_unknown_methods_are_counted(probed: Probed) -> None:
    """From 0: three Checks OK, two undecodable Checks INVALID_ARGUMENT, two calls to methods the listener
    does not have (whatever their names) under one `unknown`; none of them in sesame_rpc_requests_total."""
    assert probed.server.health_port is not None
    assert probed.counted("Check", "OK") == 0
    assert probed.counted("unknown", "UNIMPLEMENTED") == 0
    before = probed.rpc_requests()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{probed.server.health_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(3):
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        raw = channel.unary_unary("/grpc.health.v1.Health/Check")
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await raw(_BAD_WIRE, timeout=5)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        for path in ("/sesame.api.v1.EnrollmentService/GetUser", "/no.such.Service/M"):
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await channel.unary_unary(path)(b"", timeout=5)
            assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED
    await _until("checks", probed, "Check", "OK", 3)
    await _until("undecodable", probed, "Check", "INVALID_ARGUMENT", 2)
    await _until("unknown", probed, "unknown", "UNIMPLEMENTED", 2)
    assert probed.rpc_requests() == before


async def test_a_watch_on_the_listener_is_counted_when_it_ends(probed: Probed) -> None:
    """A Watch cancelled by its caller after its first status is counted CANCELLED."""
    assert probed.server.health_port is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{probed.server.health_port}") as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=5)
        first = await call.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        call.cancel()
    await _until("watch", probed, "Watch", "CANCELLED", 1)


def _sent_unacknowledged(address: str, size: int) -> bytes:
    """A Check with a `size`-byte header, on a connection that never acknowledges the server's SETTINGS;
    what the server answered."""
    sock = unacknowledged(address)
    try:
        sock.sendall(
            long_headers("/grpc.health.v1.Health/Check", address, b"x-big", size)
            + frame(DATA, END_STREAM, 1, grpc_message(b""))
        )
        return drained(sock)
    finally:
        sock.close()


# gRPC's own refusal: before the SETTINGS are acknowledged it refuses headers past its soft limit at random,
# the more often the closer to HTTP/2's 16 MiB (about one call in sixteen at 1 MiB); that call never reaches
# a servicer, and nothing of Sésame's counts it.
_GRPCS_OWN = b"received metadata size exceeds soft limit"


async def test_big_headers_from_a_client_that_never_acknowledges_settings_are_refused(probed: Probed) -> None:
    """Found from outside (AK1): gRPC bounds headers once its SETTINGS are acknowledged; on this port, which
    anyone on the probes' network reaches without a certificate, a Check with 1 MB of headers was served.
    Every try is refused RESOURCE_EXHAUSTED; tried until the refusal is Sésame's bound's (gRPC's own, at
    random, is not counted), which is counted once."""
    assert probed.server.health_port is not None
    address = f"127.0.0.1:{probed.server.health_port}"
    for _ in range(8):
        answer = await asyncio.to_thread(_sent_unacknowledged, address, 1024 * 1024)
        assert b"grpc-status\x018" in answer  # RESOURCE_EXHAUSTED, in the trailers of a refused call
        if _GRPCS_OWN not in answer:
            break
    assert b"call headers over 8 KiB" in answer
    await _until("refused", probed, "Check", "RESOURCE_EXHAUSTED", 1)
    assert probed.counted("Check", "OK") == 0

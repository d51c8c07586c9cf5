"""Connections that open TCP, or start TLS, and never finish the handshake: gRPC held each for its default
handshake timeout of 120 s, counted against the worker's connection bound (decision 0055), so a flood of
them kept every new caller out for two minutes, then again. Now a connection that has not finished its
handshake (TLS, then HTTP/2's preface and SETTINGS) within SESAME_HANDSHAKE_TIMEOUT_SECONDS is closed
(decision 0057): the flood's connections go, and a caller retrying its connection is served."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.pki import Pki
from tests.support.serve_process import free_port, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BOUND = 20  # SESAME_MAX_CONNECTIONS of the server under test
FLOOD = BOUND + 10  # never-handshaking connections: more than the bound holds
TIMEOUT = 2  # SESAME_HANDSHAKE_TIMEOUT_SECONDS of the server under test
SLACK = 6.0  # seconds a loaded test machine may add to the timeout, far under gRPC's default of 120
# What the flood sends: nothing on the plaintext port; the header of a TLS handshake record announcing 512
# bytes that never come on the mTLS port (a ClientHello begun).
OPENING = {"plaintext": b"", "mtls": b"\x16\x03\x01\x02\x00"}
# A legitimate caller's channel: a connection of its own, retried every 0.2 to 0.5 s while refused.
RETRYING = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 500),
)


async def _held(address: str, opening: bytes) -> float:
    """Open a connection, send `opening`, never more; the seconds until the server closed it."""
    host, _, port = address.rpartition(":")
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        if opening:
            writer.write(opening)
            await writer.drain()
        async with asyncio.timeout(TIMEOUT + SLACK + 10):
            while await reader.read(4096):  # the server's SETTINGS frame or TLS alert, then its close
                pass
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return time.monotonic() - opened


@pytest.mark.parametrize("transport", ["plaintext", "mtls"])
async def test_connections_that_never_finish_their_handshake_are_closed_and_a_caller_gets_in(
    tmp_path: Path, pki: Pki, transport: str
) -> None:
    """FLOOD connections that never finish their handshake fill the bound; a caller retrying its connection
    is served within the handshake timeout and some slack (before decision 0057: not within 120 s), and
    every flood connection is closed by then."""
    settings = {"SESAME_MAX_CONNECTIONS": str(BOUND), "SESAME_HANDSHAKE_TIMEOUT_SECONDS": str(TIMEOUT)}
    credentials = None
    if transport == "mtls":
        settings |= {**pki.env, "SESAME_HEALTH_ADDR": f"127.0.0.1:{free_port()}"}
        credentials = pki.stranger.credentials(pki.ca)
    serving = start_serve(tmp_path / "var", settings=settings)
    try:
        flood = [asyncio.create_task(_held(serving.address, OPENING[transport])) for _ in range(FLOOD)]
        await asyncio.sleep(0.5)  # the flood's connections accepted: the bound is full
        started = time.monotonic()
        if credentials is None:
            channel = grpc.aio.insecure_channel(serving.address, options=RETRYING)
        else:
            channel = grpc.aio.secure_channel(serving.address, credentials, options=RETRYING)
        async with channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT + SLACK, wait_for_ready=True
            )
        served_after = time.monotonic() - started
        held = await asyncio.gather(*flood)
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert served_after < TIMEOUT + SLACK
    # The bound was full: BOUND connections were held until the timeout, those beyond closed at accept.
    assert sum(1 for seconds in held if seconds >= TIMEOUT - 0.5) >= BOUND // 2
    assert max(held) < TIMEOUT + SLACK

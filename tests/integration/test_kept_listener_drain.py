"""A drain that comes while a listener is being made again stops that listener too (decision 0161).

Found by a review of 0161: the drain cancelled the watch that makes a listener grpc's loop ended listen
again; a listener it was starting then (grpc's start runs in its core, and a cancel does not stop it) was
left serving, never stopped, after the worker's drain had returned. Real grpc.aio servers on loopback.
"""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from sesame.server.grpc.server import Listener, _Kept

pytestmark = pytest.mark.integration

MAKING_SECONDS = 0.3  # how long the second listener takes to start: the drain comes meanwhile


async def test_a_drain_during_a_rebind_leaves_no_listener_serving() -> None:
    made: list[Listener] = []

    async def start(address: str) -> Listener:
        if made:  # made again: a start that takes a moment and that a cancel does not stop
            await asyncio.sleep(MAKING_SECONDS)
        server = grpc.aio.server()
        port = server.add_insecure_port(address)
        await server.start()
        made.append(Listener(server, port))
        return made[-1]

    async def make(address: str) -> Listener:
        return await asyncio.shield(start(address))

    kept = await _Kept.open("the test port", make, "127.0.0.1:0")
    port = kept.listener.port
    await made[0].server.stop(None)  # as grpc's loop ending it: the watch makes it again
    await asyncio.sleep(MAKING_SECONDS / 3)
    await kept.stop(0)
    await asyncio.sleep(MAKING_SECONDS)  # a start the drain missed would be done by now
    assert len(made) == 2, "the listener was not made again"
    assert not _accepts(port), "a listener made during the drain is still serving"


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0

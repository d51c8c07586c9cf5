"""`sesame serve` over SMPP, an SMSC refusing the bind (a wrong password after a rotation): health says so.

The SMSC answered every bind_transceiver with ESME_RBINDFAIL: no message could leave, each would fail at once
(`unreachable`), yet health's `sesame.SmsGateway` read SERVING (and `sesame_health_serving` 1) until a
customer's SMS had failed: the watch learnt only from sends. It now reads NOT_SERVING while every provider is
held, its session not bound since its last attempt to bind failed, and SERVING again once it binds
(decision 0122).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.clients import smpp_pdu as pdu
from tests.support.ports import free_port
from tests.support.serve_process import ServeProcess, served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ESME_RBINDFAIL = 0x0D
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class BindGate:
    """An SMSC on loopback that answers each bind_transceiver with ESME_RBINDFAIL while `refusing`, else
    binds and answers enquire_link; it takes no message. Runs in an event loop of its own thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self.refusing = True
        self.binds: list[bool] = []
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._run(),), daemon=True
        )
        self._ready = threading.Event()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self._ready.set()
        await self._stop.wait()
        server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, pdu.MalformedPdu):
            while True:
                received = await pdu.read_pdu(reader)
                status = 0
                if received.command_id == pdu.BIND_TRANSCEIVER:
                    status = ESME_RBINDFAIL if self.refusing else 0
                    self.binds.append(not self.refusing)
                answer = pdu.Pdu(received.command_id | pdu.RESPONSE, status, received.sequence, b"GATE\0")
                writer.write(answer.encode() if received.command_id != pdu.ENQUIRE_LINK else _bare(received))
                await writer.drain()
                if status:
                    writer.close()
                    return
        writer.close()

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        self._loop.close()


def _bare(received: pdu.Pdu) -> bytes:
    return struct.pack(">IIII", 16, received.command_id | pdu.RESPONSE, 0, received.sequence)


@pytest.fixture
def gate() -> Iterator[BindGate]:
    with BindGate() as running:
        yield running


@pytest.fixture
def serving(gate: BindGate, tmp_path: Path) -> Iterator[ServeProcess]:
    """A `sesame serve` whose only provider is the gate."""
    settings = {
        "SESAME_SMS_PROVIDERS": "smpp",
        "SESAME_SMPP_HOST": "127.0.0.1",
        "SESAME_SMPP_PORT": str(gate.port),
        "SESAME_SMPP_SYSTEM_ID": "sesame",
        "SESAME_SMPP_PASSWORD": "wrong!pw",
    }
    with served(tmp_path / "var", settings) as serving:
        yield serving


def _sms_health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="sesame.SmsGateway")
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=3).status)


def _until_health(address: str, status: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _sms_health(address) == status:
            return True
        time.sleep(0.2)
    return False


def test_a_refused_bind_reads_not_serving_before_any_send_and_serving_once_bound(
    gate: BindGate, serving: ServeProcess
) -> None:
    """No SMS is sent: with every bind refused the gateway's health reads NOT_SERVING within 5 s; once the
    SMSC takes the bind (the password fixed on its side), SERVING again within the bind's backoff (≤ 10 s)."""
    assert _until_health(serving.address, NOT_SERVING, 5), serving.output()[-2000:]
    assert not any(gate.binds)
    gate.refusing = False
    assert _until_health(serving.address, SERVING, 15), serving.output()[-2000:]
    assert any(gate.binds)

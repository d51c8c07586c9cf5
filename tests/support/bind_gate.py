"""An SMSC on loopback that refuses the bind (a wrong password after a rotation) until told not to.

Our own codec's PDUs, not smpp34's simulator: that one accepts every bind.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from typing import Self

from sesame.clients import smpp_pdu as pdu
from tests.support.ports import free_port

ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E


class BindGate:
    """Answers each bind_transceiver with `refuse_with` (ESME_RBINDFAIL unless told) while `refusing`, else
    binds and answers enquire_link; it takes no message. Runs in an event loop of its own thread."""

    def __init__(self, refuse_with: int = ESME_RBINDFAIL) -> None:
        self.port = free_port()
        self.refusing = True
        self.refuse_with = refuse_with
        self.binds: list[bool] = []  # each bind_transceiver: taken (True) or refused
        self.attempts: list[float] = []  # when each came, time.monotonic()
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
                    status = self.refuse_with if self.refusing else 0
                    self.binds.append(not self.refusing)
                    self.attempts.append(time.monotonic())
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

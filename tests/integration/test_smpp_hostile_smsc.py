"""The SMPP session against an SMSC that pushes more than it should (decision 0084): a flood of deliver_sm
(a receipt backlog after an outage, or a hostile peer) and a peer that never reads our answers.

Before, every deliver_sm read became a task at once: 300,000 receipts through `sesame serve` became as many
concurrent Redis look-ups, the worker's StartChallenge answered in 5 s (some past their deadline), the
sealer timed out and 294,000 WARNING lines were logged. Now at most DELIVERIES_AT_ONCE are handled at once
and the SMSC waits on TCP for the rest; a peer that leaves UNREAD_LIMIT bytes of our answers unread loses
the session."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

import pytest

from sesame.clients import smpp_pdu as pdu
from sesame.clients.smpp_pdu import Address, Bind, Pdu
from sesame.clients.smpp_session import DELIVERIES_AT_ONCE, SmppSession, Timing
from sesame.clients.sms_smpp import SmppConfig, SmppSmsGateway
from tests.fakes.clock import ShiftedClock

pytestmark = pytest.mark.integration

RECEIPTS = 3000
TIMING = Timing(connect=5, response=5, keepalive=300)


def _frame(command_id: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, 0, sequence) + body


def _receipt(n: int) -> bytes:
    """A deliver_sm body: a delivery receipt for a message id nobody sent."""
    text = (
        f"id:unknown{n} sub:001 dlvrd:001 submit date:2612020700 done date:2612020700 stat:DELIVRD"
    ).encode()
    addresses = b"\x01\x0133612345678\x00" + b"\x05\x00SESAME\x00"
    return b"\x00" + addresses + b"\x04\x00\x00\x00\x00\x00\x00\x00" + bytes([len(text)]) + text


class HostileSmsc:
    """Answers the bind, then sends `frames` as fast as TCP takes them; counts the answers it reads."""

    def __init__(self, frames: list[bytes], *, reads: bool) -> None:
        self.frames = frames
        self.reads = reads
        self.answers = 0
        self.binds = 0
        self.all_answered = asyncio.Event()
        self.port = 0

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            head = await reader.readexactly(16)
            length, command_id, _, sequence = struct.unpack(">IIII", head)
            await reader.readexactly(length - 16)
            self.binds += 1
            writer.write(_frame(command_id | pdu.RESPONSE, sequence, b"hostile\x00"))
            counting = asyncio.create_task(self._count(reader)) if self.reads else None
            for start in range(0, len(self.frames), 500):
                writer.write(b"".join(self.frames[start : start + 500]))
                await writer.drain()
            if counting is not None:
                await counting

    async def _count(self, reader: asyncio.StreamReader) -> None:
        while True:
            answer = await pdu.read_pdu(reader)
            if answer.command_id == pdu.DELIVER_SM | pdu.RESPONSE:
                self.answers += 1
                if self.answers == len(self.frames):
                    self.all_answered.set()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[HostileSmsc]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self


async def test_a_flood_of_receipts_is_handled_a_bounded_number_at_a_time_and_every_one_answered() -> None:
    """RECEIPTS deliver_sm at once, a handler taking a millisecond each: never more than DELIVERIES_AT_ONCE
    handled at once, and the SMSC gets a deliver_sm_resp for each."""
    smsc = HostileSmsc([_frame(pdu.DELIVER_SM, n + 1, _receipt(n)) for n in range(RECEIPTS)], reads=True)
    busy, most = 0, 0

    async def handle(_: Pdu) -> int:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        await asyncio.sleep(0.001)
        busy -= 1
        return pdu.ESME_ROK

    async with smsc.serving():
        session = await SmppSession.open("127.0.0.1", smsc.port, Bind("x", "pw"), TIMING, handle)
        running = asyncio.create_task(session.run())
        async with asyncio.timeout(60):
            await smsc.all_answered.wait()
        session.abort()
        await running
    assert most <= DELIVERIES_AT_ONCE
    assert smsc.answers == RECEIPTS


async def test_an_smsc_that_never_reads_our_answers_loses_the_session() -> None:
    """Unknown commands by the hundred thousand (each answered by generic_nack), none of our answers read:
    the session ends by itself instead of buffering answers for as long as the peer sends."""
    smsc = HostileSmsc([_frame(0x00000999, n + 1) for n in range(600_000)], reads=False)

    async def handle(_: Pdu) -> int:
        return pdu.ESME_ROK

    async with smsc.serving():
        session = await SmppSession.open("127.0.0.1", smsc.port, Bind("x", "pw"), TIMING, handle)
        async with asyncio.timeout(60):
            await session.run()


async def test_an_smsc_that_breaks_each_session_at_once_is_bound_again_with_a_growing_wait() -> None:
    """Each bind answered, then a PDU of command_length 2^31 at once: over 6 s the gateway binds at most 5
    times (0.5, 1, 2, 4 s apart), not every 0.5 s."""
    smsc = HostileSmsc([struct.pack(">IIII", 2**31, pdu.DELIVER_SM, 0, 1)], reads=False)
    async with smsc.serving():
        gateway = SmppSmsGateway(
            SmppConfig("127.0.0.1", smsc.port, "sesame", "secret", Address(5, 0, "MaBanque"), timing=TIMING),
            ShiftedClock(),
        )
        await gateway.start()
        await asyncio.sleep(6)
        await gateway.close()
    assert 2 <= smsc.binds <= 5

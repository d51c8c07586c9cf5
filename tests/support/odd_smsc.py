"""An SMSC of our own, on loopback, that misbehaves as a test tells it (an outside audit's adversarial SMSC):
raw SMPP 3.4 PDUs, so that it can answer what the `smpp34` simulator never would (a generic_nack for a
submit_sm, another session's receipt before the submit_sm_resp, message ids of any size or alphabet).

Each connection is one session: bind, then submit_sm answered as set, deliver_sm_resp counted, a receipt
answered with an error status sent again a bounded number of times. Every task ends with `serving()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import smpp34

from sesame.clients import smpp_pdu as pdu
from sesame.clients.smpp_pdu import Address
from sesame.clients.smpp_session import Timing
from sesame.clients.sms_smpp import SmppConfig, SmppSmsGateway


def frame(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    """One PDU on the wire."""
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


@dataclass
class OddSmsc:
    """Listens on 127.0.0.1 (a free port, `port` once serving); what it answers is the test's to set."""

    # The message_id of the submit_sm_resp to the n-th submit_sm (1 first), without its NUL.
    message_id: Callable[[int], bytes] = lambda n: f"odd{n:x}".encode()
    # The command_id and status answering each submit_sm (a generic_nack, an enquire_link_resp...).
    submit_answer: tuple[int, int] = (pdu.SUBMIT_SM | pdu.RESPONSE, pdu.ESME_ROK)
    # The bind's answer: its command_id, its status, and the sequence number's offset from the bind's.
    bind_answer: tuple[int, int, int] = (pdu.BIND_TRANSCEIVER | pdu.RESPONSE, pdu.ESME_ROK, 0)
    # A receipt with this stat for each part, on another bound session, written before the submit_sm_resp.
    receipt_elsewhere: str | None = None
    redeliver_after: float = 0.2  # seconds before a receipt answered with an error status is sent again
    redeliveries: int = 5  # at most this many times each
    port: int = 0
    submits: int = 0
    deliver_answers: Counter[int] = field(default_factory=Counter)  # deliver_sm_resp statuses seen
    _sessions: list[asyncio.StreamWriter] = field(default_factory=list)
    _sequence: int = 1000
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Our deliver_sm awaiting their answer: the session, the body, the tries left.
    _sent: dict[int, tuple[asyncio.StreamWriter, bytes, int]] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[OddSmsc]:
        """Listen for the block; every session is closed and every task ended after it."""
        server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            async with server:
                yield self
        finally:
            for writer in self._sessions:
                writer.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def receipt(self, message_id: str, stat: str) -> bytes:
        """A deliver_sm body: the receipt of `message_id` in Appendix B's text."""
        dates = "submit date:2612061200 done date:2612061200"
        text = f"id:{message_id} sub:001 dlvrd:001 {dates} stat:{stat} err:000"
        encoded = smpp34.DeliverSm("33612345678", "MaBanque", text.encode(), esm_class=0x04).encode()
        return encoded[16:]

    def push(self, message_id: str, stat: str, count: int = 1, tries: int = 0) -> None:
        """`count` receipts for `message_id` on the first bound session, at once (a flood), each sent again up
        to `tries` times while refused."""
        for _ in range(count):
            self.deliver(self._sessions[0], self.receipt(message_id, stat), tries)

    def deliver(self, writer: asyncio.StreamWriter, body: bytes, tries: int) -> None:
        """Write a deliver_sm on `writer`, sent again there up to `tries` times while refused."""
        self._sequence += 1
        self._sent[self._sequence] = (writer, body, min(tries, self.redeliveries))
        writer.write(frame(pdu.DELIVER_SM, 0, self._sequence, body))

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, pdu.MalformedPdu):
            bind = await pdu.read_pdu(reader)
            command_id, status, offset = self.bind_answer
            writer.write(frame(command_id, status, bind.sequence + offset, b"ODD\0"))
            self._sessions.append(writer)
            while True:
                received = await pdu.read_pdu(reader)
                if received.command_id == pdu.SUBMIT_SM:
                    self._submitted(writer, received)
                elif received.command_id == pdu.ENQUIRE_LINK:
                    writer.write(frame(pdu.ENQUIRE_LINK | pdu.RESPONSE, 0, received.sequence))
                elif received.command_id == pdu.DELIVER_SM | pdu.RESPONSE:
                    self._answered(received)
                elif received.command_id == pdu.UNBIND:
                    writer.write(frame(pdu.UNBIND | pdu.RESPONSE, 0, received.sequence))
                    break
        writer.transport.abort()

    def _submitted(self, writer: asyncio.StreamWriter, received: pdu.Pdu) -> None:
        self.submits += 1
        message_id = self.message_id(self.submits)
        if self.receipt_elsewhere is not None:
            for other in self._sessions:
                if other is not writer and not other.is_closing():
                    text = self.receipt(message_id.decode("ascii", "replace"), self.receipt_elsewhere)
                    self.deliver(other, text, self.redeliveries)
                    break
        command_id, status = self.submit_answer
        writer.write(frame(command_id, status, received.sequence, message_id + b"\0"))

    def _answered(self, received: pdu.Pdu) -> None:
        self.deliver_answers[received.status] += 1
        sent = self._sent.pop(received.sequence, None)
        if sent is not None and received.status != pdu.ESME_ROK and sent[2] > 0:
            task = asyncio.create_task(self._again(*sent))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _again(self, writer: asyncio.StreamWriter, body: bytes, tries: int) -> None:
        await asyncio.sleep(self.redeliver_after)
        if not writer.is_closing():
            self.deliver(writer, body, tries - 1)


def config_for(port: int, *, rate: float = 10.0, seconds: float = 2.0) -> SmppConfig:
    """The gateway's settings for an SMSC on loopback `port`: `rate` submit_sm a second, `seconds` to connect
    and for each answer."""
    return SmppConfig(
        "127.0.0.1",
        port,
        "sesame",
        "secret",
        Address(5, 0, "MaBanque"),
        rate=rate,
        timing=Timing(connect=seconds, response=seconds, keepalive=30.0),
    )


@contextlib.asynccontextmanager
async def bound(gateway: SmppSmsGateway, within: float = 20.0) -> AsyncIterator[SmppSmsGateway]:
    """`gateway` started and bound (within `within` seconds), closed on the way out."""
    await gateway.start()
    try:
        async with asyncio.timeout(within):
            while not gateway.bound:  # noqa: ASYNC110 (the gateway's own task binds)
                await asyncio.sleep(0.02)
        yield gateway
    finally:
        await gateway.close()

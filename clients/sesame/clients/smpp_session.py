"""One bound SMPP transceiver connection: requests matched to responses, the SMSC's requests answered.

The session reads every PDU in one task. A response completes the request of the same sequence number;
the SMSC's own requests are answered here: enquire_link at once, unbind by closing, deliver_sm once the
owner's handler has dealt with it (so a receipt the store could not record is answered with a temporary
error, and the SMSC sends it again). Our own enquire_link every `keepalive` seconds shows a dead peer
that TCP would not notice for minutes. Any failure ends `run()`; the owner reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, NoReturn

from sesame.clients import smpp_pdu as pdu
from sesame.clients import smpp_status
from sesame.clients.smpp_pdu import Bind, Pdu

_log = logging.getLogger("sesame.sms")

# A handler gets a deliver_sm and returns the command_status of its deliver_sm_resp.
DeliverHandler = Callable[[Pdu], Awaitable[int]]
OnResponse = Callable[[Pdu], None]
_UNBIND_WAIT: Final = 1.0
# deliver_sm being handled at once. The next is read once one is done, so an SMSC pushing receipts faster
# than the store takes them (a backlog after an outage, or a flood) waits on TCP; unbounded, 300,000 of them
# became as many tasks and Redis calls at once, starving the worker's calls and its sealer (decision 0084).
DELIVERIES_AT_ONCE: Final = 32
# Bytes of our answers the SMSC may leave unread before the session is dropped: one that sends and never
# reads would otherwise grow our write buffer for as long as it sends.
UNREAD_LIMIT: Final = 1 << 20
# Requests given up on (no answer in time) whose late answer is still handed to their `late` callback: an
# SMSC that answers a submit_sm after our timeout took the message all the same (decision 0121).
LATE_KEPT: Final = 1024


class SessionLost(Exception):
    """The connection ended, or the SMSC did not answer in time."""


class Closed(SessionLost):
    """The session had ended before the request was written: the SMSC got nothing."""


class NoAnswer(SessionLost):
    """The SMSC did not answer a request in time."""


class BindRefused(SessionLost):
    """The SMSC answered the bind with an error status (`status`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Timing:
    """How long to wait for the connection, for each answer, and between our keep-alives."""

    connect: float
    response: float
    keepalive: float


class SmppSession:
    """A connection after a successful bind_transceiver."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timing: Timing,
        on_deliver: DeliverHandler,
    ) -> None:
        """Use an open connection; call `bind` next."""
        self._reader = reader
        self._writer = writer
        self._timing = timing
        self._on_deliver = on_deliver
        self._sequence = itertools.count(1)
        self._waiting: dict[int, tuple[asyncio.Future[Pdu], OnResponse | None]] = {}
        self._late: OrderedDict[int, OnResponse] = OrderedDict()
        self._handlers: set[asyncio.Task[None]] = set()
        self._deliveries = asyncio.Semaphore(DELIVERIES_AT_ONCE)
        self._closed = False

    @classmethod
    async def open(
        cls, host: str, port: int, bind: Bind, timing: Timing, on_deliver: DeliverHandler
    ) -> SmppSession:
        """Connect and bind as a transceiver. SessionLost (BindRefused when the SMSC says no)."""
        try:
            async with asyncio.timeout(timing.connect):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            raise SessionLost(f"cannot connect to the SMSC: {type(exc).__name__}") from None
        session = cls(reader, writer, timing, on_deliver)
        try:
            async with asyncio.timeout(timing.connect):
                answer = await session._bind(bind)
        except (TimeoutError, SessionLost, pdu.MalformedPdu, asyncio.IncompleteReadError, OSError) as exc:
            session.abort()
            raise SessionLost(f"no bind_transceiver_resp: {type(exc).__name__}") from None
        if answer.status != pdu.ESME_ROK:
            session.abort()
            name = smpp_status.BIND_CREDENTIALS.get(answer.status)
            status = f"0x{answer.status:08x}, {name}" if name else f"0x{answer.status:08x}"
            raise BindRefused(answer.status, f"the SMSC refused the bind (status {status})")
        return session

    async def _bind(self, bind: Bind) -> Pdu:
        # Before `run` reads: the bind's answer is the first PDU the SMSC may send.
        sequence = next(self._sequence)
        self._write(Pdu(pdu.BIND_TRANSCEIVER, 0, sequence, bind.body()))
        answer = await pdu.read_pdu(self._reader)
        # Only our bind's answer binds; a generic_nack refuses with its status, and says nothing with none
        # (an outside audit: a generic_nack of status 0, or an answer to another sequence, read as bound).
        if answer.command_id not in (pdu.BIND_TRANSCEIVER | pdu.RESPONSE, pdu.GENERIC_NACK):
            raise SessionLost(f"unexpected PDU 0x{answer.command_id:08x} before the bind answer")
        if answer.sequence != sequence:
            raise SessionLost(f"a bind answer for sequence {answer.sequence}, not {sequence}")
        if answer.command_id == pdu.GENERIC_NACK and answer.status == pdu.ESME_ROK:
            raise SessionLost("a generic_nack with no error status for the bind")
        return answer

    @property
    def closed(self) -> bool:
        """True once nothing more can be written: the connection ended, or the SMSC unbound."""
        return self._closed

    async def request(
        self,
        command_id: int,
        body: bytes,
        on_response: OnResponse | None = None,
        *,
        late: OnResponse | None = None,
    ) -> Pdu:
        """Send a request and wait for its answer; `on_response` sees it first, before any later PDU. When
        no answer came in time (NoAnswer), `late` sees the answer if it comes later on this session."""
        if self._closed:
            raise Closed("the session is closed")
        sequence = next(self._sequence)
        answered: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self._waiting[sequence] = (answered, on_response)
        try:
            self._write(Pdu(command_id, 0, sequence, body))
            async with asyncio.timeout(self._timing.response):
                return await answered
        except TimeoutError:
            if late is not None:
                self._late[sequence] = late
                while len(self._late) > LATE_KEPT:
                    self._late.popitem(last=False)
            raise NoAnswer("the SMSC did not answer in time") from None
        finally:
            self._waiting.pop(sequence, None)

    async def run(self) -> None:
        """Read and keep alive until the connection ends; then fail every request still waiting."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._keepalive())
                await self._read()
        except* (SessionLost, pdu.MalformedPdu, OSError, asyncio.IncompleteReadError) as failures:
            _log.warning("SMPP session ended: %s", failures.exceptions[0])
        finally:
            self.abort()

    async def unbind(self) -> None:
        """Say goodbye politely (bounded wait), then close."""
        with contextlib.suppress(SessionLost, OSError):
            async with asyncio.timeout(_UNBIND_WAIT):
                await self.request(pdu.UNBIND, b"")
        self.abort()

    def abort(self) -> None:
        """Close the connection; requests still waiting fail with SessionLost."""
        self._closed = True
        self._writer.close()
        for answered, _ in self._waiting.values():
            if not answered.done():
                answered.set_exception(SessionLost("the connection ended"))
        self._waiting.clear()

    async def _read(self) -> NoReturn:
        """Until the SMSC unbinds (SessionLost) or the stream ends (IncompleteReadError)."""
        while True:
            if self._writer.transport.get_write_buffer_size() > UNREAD_LIMIT:
                raise SessionLost("the SMSC leaves our answers unread")
            received = await pdu.read_pdu(self._reader)
            if received.is_response:
                self._answered(received)
            elif received.command_id == pdu.ENQUIRE_LINK:
                self._write(Pdu(pdu.ENQUIRE_LINK | pdu.RESPONSE, pdu.ESME_ROK, received.sequence))
            elif received.command_id == pdu.DELIVER_SM:
                await self._deliveries.acquire()
                task = asyncio.create_task(self._deliver(received))
                self._handlers.add(task)
                task.add_done_callback(self._delivered)
            elif received.command_id == pdu.UNBIND:
                self._write(Pdu(pdu.UNBIND | pdu.RESPONSE, pdu.ESME_ROK, received.sequence))
                # Nothing more is written: a submit_sm after the unbind_resp would be lost, not sent again.
                self._closed = True
                raise SessionLost("the SMSC unbound")
            else:
                self._write(Pdu(pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, received.sequence))

    def _answered(self, received: Pdu) -> None:
        waiting = self._waiting.get(received.sequence)
        if waiting is None:
            late = self._late.pop(received.sequence, None)
            if late is not None:
                late(received)  # answered after we gave up on it: told to whom it may still concern
            return
        answered, on_response = waiting
        if on_response is not None:
            on_response(received)
        if not answered.done():
            answered.set_result(received)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._handlers.discard(task)
        self._deliveries.release()

    async def _deliver(self, received: Pdu) -> None:
        status = await self._on_deliver(received)
        if not self._closed:
            # deliver_sm_resp's body is an empty message_id (§4.6.2).
            self._write(Pdu(pdu.DELIVER_SM | pdu.RESPONSE, status, received.sequence, b"\0"))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self._timing.keepalive)
            await self.request(pdu.ENQUIRE_LINK, b"")

    def _write(self, out: Pdu) -> None:
        # One write per PDU: the transport keeps writes whole and in order, no lock needed.
        self._writer.write(out.encode())

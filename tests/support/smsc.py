"""An SMSC on loopback for the SMPP tests: the `smpp34` package's simulator (Rust), not our own codec.

It accepts every bind, answers each submit_sm with a message id (or the status it is told to refuse
with), keeps what it got, and, when asked for one, pushes a delivery receipt back on the same session.
`unbind_all` ends the sessions politely; a `Cable` in front of it cuts them as a network failure would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import smpp34

from sesame.clients import smpp_text
from tests.support.ports import free_port


@dataclass(frozen=True)
class Submitted:
    """One submit_sm as the SMSC saw it, and the id it answered with."""

    message_id: str
    destination: str
    source: str
    source_ton: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)  # the optional parameters, by tag

    @property
    def text(self) -> str:
        """The part's text, without its concatenation header."""
        body = self.short_message[6:] if self.esm_class & smpp_text.UDHI else self.short_message
        return smpp_text.decode(self.data_coding, body)


@dataclass
class Smsc:
    """smpp34.Server on 127.0.0.1:`port`, driven by `serve()`; what to answer is set by the test."""

    port: int = field(default_factory=free_port)
    receipt: str | None = "DELIVRD"  # the stat of the receipt sent after each submit; None: no receipt
    refuse_with: int | None = None  # a command_status to refuse every submit_sm with
    accept_first: int = 0  # submits accepted before `refuse_with` applies
    refusals: int | None = None  # how many submits `refuse_with` refuses before accepting again; None: all
    refused: int = 0  # submits refused so far
    # Seconds to wait before answering the submit of this index (0 the first), past the ESME's timeout
    late: dict[int, float] = field(default_factory=dict)
    submitted: list[Submitted] = field(default_factory=list)
    binds: int = 0
    _server: smpp34.Server | None = None
    _sessions: dict[str, smpp34.Esme] = field(default_factory=dict)
    _count: int = 0
    _task: asyncio.Task[None] | None = None
    _late_answers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        """Listen (the bind takes under a millisecond) and answer in a task of this event loop."""
        self._server = smpp34.Server(host="127.0.0.1", port=self.port, system_id="SIM")
        await self._server.start()
        self._task = asyncio.create_task(self._serve(self._server))

    async def stop(self) -> None:
        """Stop answering and listening; every session is closed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
            self._sessions.clear()

    async def unbind_all(self) -> None:
        """Send unbind to every bound ESME, as an SMSC going down for maintenance does."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            with contextlib.suppress(smpp34.SmppError):
                await session.unbind()

    async def _serve(self, server: smpp34.Server) -> None:
        # No timeout around next(): an event taken by a cancelled next() would be lost.
        while True:
            event = await server.next()
            if isinstance(event, smpp34.Esme):
                self._sessions[event.session_id] = event
                self.binds += 1
            elif isinstance(event, smpp34.SubmitSmEvent):
                await self._submitted(event)

    async def _submitted(self, event: smpp34.SubmitSmEvent) -> None:
        if (
            self.refuse_with is not None
            and len(self.submitted) >= self.accept_first
            and (self.refusals is None or self.refused < self.refusals)
        ):
            self.refused += 1
            event.reject(self.refuse_with)
            return
        self._count += 1
        message_id = f"sim{self._count:06x}"
        delay = self.late.get(self._count - 1)
        if delay is not None:
            self._late_answers.add(asyncio.create_task(self._late(event, message_id, delay)))
            return
        self._accept(event, message_id)
        session = self._sessions.get(event.session_id)
        if self.receipt is not None and event.registered_delivery and session is not None:
            text = f"id:{message_id} sub:001 dlvrd:001 submit date:2611301200 done date:2611301200 "
            # The ESME may be gone already (a test that ended): the receipt is then simply lost.
            with contextlib.suppress(smpp34.SmppError):
                await session.deliver_sm(
                    destination_addr=event.source_addr,
                    source_addr=event.destination_addr,
                    esm_class=0x04,
                    short_message=f"{text}stat:{self.receipt} err:000 text:".encode(),
                )

    def _accept(self, event: smpp34.SubmitSmEvent, message_id: str) -> None:
        """Answer `event` accepted under `message_id`, and keep what it submitted."""
        event.accept(message_id=message_id)
        self.submitted.append(
            Submitted(
                message_id,
                event.destination_addr,
                event.source_addr,
                event.source_addr_ton,
                event.esm_class,
                event.data_coding,
                event.registered_delivery,
                event.short_message,
                {tlv.tag: bytes(tlv.value) for tlv in event.tlvs},
            )
        )

    async def _late(self, event: smpp34.SubmitSmEvent, message_id: str, delay: float) -> None:
        """Answer `event` after `delay` seconds, as an SMSC whose answers are late; then as `_submitted`."""
        await asyncio.sleep(delay)
        self._accept(event, message_id)
        session = self._sessions.get(event.session_id)
        if self.receipt is not None and event.registered_delivery and session is not None:
            await self.push_receipt(message_id, self.receipt)

    async def push_receipt(self, message_id: str, stat: str) -> None:
        """A receipt for `message_id` on every bound session: as an SMSC that reports later, on whichever
        session of the account is bound by then."""
        dates = "submit date:2611301200 done date:2611301200"
        text = f"id:{message_id} sub:001 dlvrd:001 {dates} stat:{stat} err:000"
        for session in list(self._sessions.values()):
            with contextlib.suppress(smpp34.SmppError):
                await session.deliver_sm(
                    destination_addr="MaBanque",
                    source_addr="33612345678",
                    esm_class=0x04,
                    short_message=f"{text} text:".encode(),
                )

    def text(self) -> str:
        """Every part received so far, joined: the whole text of the messages sent."""
        return "".join(part.text for part in self.submitted)


def smpp_settings(smsc: Smsc, **extra: str) -> dict[str, str]:
    """The settings of a `sesame serve` whose only provider is `smsc`, and `extra`."""
    return {
        "SESAME_SMS_PROVIDERS": "smpp",
        "SESAME_SMPP_HOST": "127.0.0.1",
        "SESAME_SMPP_PORT": str(smsc.port),
        "SESAME_SMPP_SYSTEM_ID": "sesame",
        "SESAME_SMPP_PASSWORD": "s3cr3t!x",
        **extra,
    }


@contextlib.asynccontextmanager
async def serving(smsc: Smsc) -> AsyncIterator[Smsc]:
    """`smsc` listening and answering in this event loop for the block."""
    await smsc.start()
    try:
        yield smsc
    finally:
        await smsc.stop()


@contextlib.contextmanager
def serving_in_thread(smsc: Smsc) -> Iterator[Smsc]:
    """`smsc` answering from an event loop of its own thread, for tests that drive a `sesame serve` child."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def run() -> None:
        async with serving(smsc):
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield smsc
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


class Cable:
    """A TCP relay on a free loopback port to the SMSC; `cut` closes every connection through it at once."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Relay from now on."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    def cut(self) -> None:
        """Close both ends of every connection, with no SMPP goodbye."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        """Cut and stop listening."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
        writer.transport.abort()

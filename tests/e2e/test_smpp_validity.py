"""`sesame serve` over SMPP: each submit_sm of a code asks the SMSC to drop it past the code's life.

A code SMS went with no validity_period: the SMSC's default applies (often one to three days), so a phone off
or out of coverage got the code hours after it had expired, and an SMSC queue that drained late delivered
codes nobody could use (the customer, long gone, sees a code for an operation they gave up on). Each part now
carries the code's time left as a relative validity_period (decision 0123), as smpp34's codec reads it on the
wire between us and the SMSC.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import grpc
import pytest
import smpp34

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.support.outbox import dispatched_state
from tests.support.ports import free_port
from tests.support.serve_process import ServeProcess, served
from tests.support.smsc import Smsc, serving_in_thread, smpp_settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345674"
TTL = 120  # SESAME_CODE_TTL_SECONDS


class Tap:
    """A TCP relay to the SMSC that decodes, with smpp34, each submit_sm the ESME writes through it."""

    def __init__(self, target: int) -> None:
        self.port = free_port()
        self.submits: list[smpp34.SubmitSm] = []
        self._target = target
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._run(),), daemon=True
        )

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self._ready.set()
        await self._stop.wait()
        server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        await asyncio.gather(self._upstream(reader, up_writer), self._pipe(up_reader, writer))

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readexactly(16)
                length, command_id = struct.unpack(">II", head[:8])
                frame = head + await reader.readexactly(length - 16)
                if command_id == 0x04:
                    decoded = smpp34.decode(frame)
                    assert isinstance(decoded, smpp34.SubmitSm)
                    self.submits.append(decoded)
                writer.write(frame)
        writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
        writer.transport.abort()

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture
def tap() -> Iterator[Tap]:
    with serving_in_thread(Smsc(receipt=None)) as smsc, Tap(smsc.port) as running:
        yield running


@pytest.fixture
def serving(tap: Tap, tmp_path: Path) -> Iterator[ServeProcess]:
    """A `sesame serve` whose only provider is the SMSC behind the tap, codes living TTL seconds."""
    settings = smpp_settings(Smsc(port=tap.port), SESAME_CODE_TTL_SECONDS=str(TTL))
    with served(tmp_path / "var", settings) as serving:
        yield serving


def test_each_part_of_a_code_sms_carries_the_codes_time_left(tap: Tap, serving: ServeProcess) -> None:
    """The 2-part login SMS: both submit_sm carry a relative validity_period of at most TTL seconds and more
    than TTL - 30 (the send's own delay)."""
    with grpc.insecure_channel(serving.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="val", client_id="acme", secure_phone=PHONE), timeout=5
        )
        login = op_pb.Operation(login=op_pb.Login())
        started = auth_grpc.AuthenticationServiceStub(channel).StartChallenge(
            auth_pb.StartChallengeRequest(user_id="val", operation=login), timeout=10
        )
    assert dispatched_state(serving.address, started.challenge_id) == auth_pb.DELIVERY_STATE_SENT
    assert len(tap.submits) == 2
    for submit in tap.submits:
        found = re.fullmatch(r"0000(\d\d)(\d\d)(\d\d)(\d\d)000R", submit.validity_period)
        assert found is not None, submit.validity_period
        days, hours, minutes, seconds = (int(group) for group in found.groups())
        assert TTL - 30 < ((days * 24 + hours) * 60 + minutes) * 60 + seconds <= TTL

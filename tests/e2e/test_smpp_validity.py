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
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
        self.times: list[float] = []  # when each of `submits` reached the tap (time.time())
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
                    self.times.append(time.time())
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


def _seconds(validity_period: str) -> int:
    """A relative validity_period's seconds."""
    found = re.fullmatch(r"0000(\d\d)(\d\d)(\d\d)(\d\d)000R", validity_period)
    assert found is not None, validity_period
    days, hours, minutes, seconds = (int(group) for group in found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


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
        assert TTL - 30 < _seconds(submit.validity_period) <= TTL


PACED_TTL = 30  # the shortest a code may live
LOGINS = 20  # two parts each at one submit a second: 40 s of submits for codes living 30 s


def test_no_part_is_submitted_past_its_codes_end_and_a_messages_parts_go_together(
    tap: Tap, tmp_path: Path
) -> None:
    """Found by an outside audit: at 1 submit_sm a second, 40 codes of 2 parts started at once went out one
    part at a time in the order they asked, so that 22 of the first parts (the code) reached the SMSC 6 to
    27 s after the code's end with 10 s of validity, and each second part (the end of the warning) 16 to 35
    s after its first. Now the parts of a message take consecutive slots, and a message whose last slot is
    past its code's end is not submitted (tried again while time is left, else given up, never late):
    every part reaches the SMSC before its code's end, saying no more than what is left of it, right after
    its message's other part."""
    settings = smpp_settings(
        Smsc(port=tap.port), SESAME_CODE_TTL_SECONDS=str(PACED_TTL), SESAME_SMPP_RATE_PER_SECOND="1"
    )
    with served(tmp_path / "var", settings) as serving, grpc.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        phones = {f"paced-{n}": f"+336123400{n:02d}" for n in range(LOGINS)}
        for user_id, phone in phones.items():
            enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=phone)
            )
        login = op_pb.Operation(login=op_pb.Login())

        def start(user_id: str) -> auth_pb.StartChallengeResponse:
            request = auth_pb.StartChallengeRequest(user_id=user_id, operation=login)
            reply: auth_pb.StartChallengeResponse = auth.StartChallenge(request, timeout=10)
            return reply

        with ThreadPoolExecutor(LOGINS) as pool:
            started = dict(zip(phones.values(), pool.map(start, phones), strict=True))
        states = [
            dispatched_state(serving.address, reply.challenge_id, within=PACED_TTL + 30)
            for reply in started.values()
        ]
    assert auth_pb.DELIVERY_STATE_SENT in states
    # Not sent: tried again while time was left, then given up (its tries spent, or its code expired).
    unsent = {auth_pb.DELIVERY_STATE_FAILED, auth_pb.DELIVERY_STATE_EXPIRED}
    assert set(states) - {auth_pb.DELIVERY_STATE_SENT} <= unsent
    assert states.count(auth_pb.DELIVERY_STATE_SENT) < LOGINS  # the queue was past some codes' ends
    destinations = [f"+{submit.destination_addr}" for submit in tap.submits]
    assert len(destinations) == 2 * states.count(auth_pb.DELIVERY_STATE_SENT)
    assert [destinations[n] == destinations[n + 1] for n in range(0, len(destinations), 2)] == [True] * (
        len(destinations) // 2
    )
    for destination, submit, at in zip(destinations, tap.submits, tap.times, strict=True):
        end = started[destination].expires_at.ToDatetime().timestamp()
        assert at < end, (destination, end - at)
        # Rounded up to the second, read on the server's clocks a few ms before the tap saw it.
        assert at + _seconds(submit.validity_period) <= end + 1.2

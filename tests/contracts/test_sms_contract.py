"""The SmsGateway contract: the console gateway and the recording fake acknowledge and fail alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sesame.clients.sms_console import ConsoleSmsGateway
from sesame.server.domain.errors import DeliveryFailed
from sesame.server.domain.model import SmsMessage
from tests.fakes.clock import FixedClock
from tests.fakes.sms import RecordingSmsGateway

MESSAGE = SmsMessage("+33612345678", "Banque: code 482913. Valable 5 min.", "00ff.k1.d6")


@dataclass
class Subject:
    """A gateway under test, its clock, and how to make it unable to take messages."""

    gateway: ConsoleSmsGateway | RecordingSmsGateway
    clock: FixedClock
    break_it: Callable[[], None]


def _console(tmp_path: Path) -> Subject:
    clock = FixedClock()
    path = tmp_path / "sms.jsonl"
    gateway = ConsoleSmsGateway(path, clock, "development")
    # A directory where the file should be: every append fails, as a full or read-only disk would.
    return Subject(gateway, clock, path.mkdir)


def _recording(tmp_path: Path) -> Subject:
    clock = FixedClock()
    gateway = RecordingSmsGateway(clock)
    return Subject(gateway, clock, gateway.fail)


@pytest.fixture(params=[_console, _recording], ids=["console", "recording"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    """Each test runs on the console gateway and on the recording fake."""
    factory: Callable[[Path], Subject] = request.param
    return factory(tmp_path)


async def test_send_acknowledges_with_a_reference_and_the_clock_time(subject: Subject):
    """A sent message is acknowledged with a non-empty provider reference and the clock's instant."""
    sent = await subject.gateway.send(MESSAGE)
    assert sent.provider_ref
    assert sent.sent_at == subject.clock.now()


async def test_each_message_gets_its_own_reference(subject: Subject):
    """Two messages get two different provider references."""
    first = await subject.gateway.send(MESSAGE)
    second = await subject.gateway.send(MESSAGE)
    assert first.provider_ref != second.provider_ref


async def test_a_gateway_that_cannot_take_the_message_raises_delivery_failed(subject: Subject):
    """When the gateway cannot take a message, send raises DeliveryFailed and nothing else."""
    subject.break_it()
    with pytest.raises(DeliveryFailed):
        await subject.gateway.send(MESSAGE)

"""The SmsGateway contract: console, the recording fake, Kannel, SMPP and the failover over them alike."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import smpp34

from sesame.clients.smpp_pdu import Address
from sesame.clients.sms_console import ConsoleSmsGateway
from sesame.clients.sms_failover import FailoverSmsGateway, Provider
from sesame.clients.sms_kannel import KannelConfig, KannelSmsGateway
from sesame.clients.sms_smpp import SmppConfig, SmppSmsGateway
from sesame.server.domain.errors import DeliveryFailed
from sesame.server.domain.model import SmsMessage
from sesame.server.domain.ports import SmsGateway
from tests.fakes.clock import FixedClock
from tests.fakes.sms import RecordingSmsGateway
from tests.support.kannel import Kannel
from tests.support.smsc import Smsc

MESSAGE = SmsMessage("+33612345678", "Banque: code 482913. Valable 5 min.", "00ff.k1.d6")


@dataclass
class Subject:
    """A gateway under test, its clock, how to make it unable to take messages, and what to close."""

    gateway: SmsGateway
    clock: FixedClock
    break_it: Callable[[], None] = lambda: None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def _console(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    clock = FixedClock()
    path = tmp_path / "sms.jsonl"
    gateway = ConsoleSmsGateway(path, clock, "development")

    def break_it() -> None:
        # A directory where the file (created at boot) was: every append fails, as a full disk would.
        path.unlink()
        path.mkdir()

    return Subject(gateway, clock, break_it)


def _recording(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    clock = FixedClock()
    gateway = RecordingSmsGateway(clock)
    return Subject(gateway, clock, gateway.fail)


def _kannel(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    kannel: Kannel = request.getfixturevalue("kannel")
    clock = FixedClock()

    def gateway(password: str) -> KannelSmsGateway:
        made = KannelSmsGateway(KannelConfig(kannel.url, kannel.username, password, "MaBanque"), clock)
        subject.closers.append(made.close)
        return made

    def break_it() -> None:
        # Kannel refuses the account (HTTP 403), as it would a disabled or rotated one.
        subject.gateway = gateway("not-the-password")

    subject = Subject(RecordingSmsGateway(clock), clock, break_it)
    subject.gateway = gateway(kannel.password)
    return subject


async def _smpp(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    smsc = Smsc()
    await smsc.start()
    clock = FixedClock()
    gateway = SmppSmsGateway(
        SmppConfig("127.0.0.1", smsc.port, "sesame", "secret", Address(5, 0, "MaBanque")), clock
    )
    await gateway.start()

    def break_it() -> None:
        # The SMSC answers every submit_sm with a system error, as one in trouble does.
        smsc.refuse_with = smpp34.ESME_RSYSERR

    return Subject(gateway, clock, break_it, [gateway.close, smsc.stop])


def _failover(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    clock = FixedClock()
    first, second = RecordingSmsGateway(clock), RecordingSmsGateway(clock)
    first.fail()  # the second provider is the one that answers

    def break_it() -> None:
        second.fail()

    return Subject(FailoverSmsGateway([Provider("a", first), Provider("b", second)]), clock, break_it)


@pytest.fixture(
    params=[
        _console,
        _recording,
        _failover,
        pytest.param(_kannel, marks=pytest.mark.integration),
        pytest.param(_smpp, marks=pytest.mark.integration),
    ],
    ids=["console", "recording", "failover", "kannel", "smpp"],
)
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    """Each test runs on the console gateway, the fake, a failover, Kannel's sendsms and an SMPP session."""
    factory: Callable[[pytest.FixtureRequest, Path], Subject | Awaitable[Subject]] = request.param
    made = factory(request, tmp_path)
    if inspect.isawaitable(made):
        made = await made
    yield made
    for close in made.closers:
        await close()


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


async def test_a_message_reference_is_in_the_provider_reference_on_every_attempt(subject: Subject):
    """A message carrying its own reference gets a provider reference ending with it, the same each time."""
    message = SmsMessage(MESSAGE.to, MESSAGE.text, MESSAGE.challenge_id, reference="out-0042")
    first = await subject.gateway.send(message)
    again = await subject.gateway.send(message)
    assert first.provider_ref.endswith("-out-0042")
    assert again.provider_ref == first.provider_ref

"""The failover gateway: the first provider that takes a message wins, in the settings' order."""

from __future__ import annotations

import pytest

from sesame.clients.sms_failover import FailoverSmsGateway, Provider
from sesame.server.domain.errors import DeliveryFailed
from sesame.server.domain.model import SmsMessage
from tests.fakes.clock import FixedClock
from tests.fakes.sms import RecordingSmsGateway

MESSAGE = SmsMessage("+33612345678", "MaBanque: code 482913", "ch.k1.d6")


def _two() -> tuple[RecordingSmsGateway, RecordingSmsGateway, FailoverSmsGateway]:
    first, second = RecordingSmsGateway(FixedClock()), RecordingSmsGateway(FixedClock())
    return first, second, FailoverSmsGateway([Provider("smpp", first), Provider("console", second)])


async def test_the_first_provider_takes_the_message_when_it_can():
    """With both providers up, only the first is asked."""
    first, second, gateway = _two()
    await gateway.send(MESSAGE)
    assert (first.sent, second.sent) == ([MESSAGE], [])


async def test_a_failing_provider_hands_the_message_to_the_next():
    """DeliveryFailed from the first: the second gets the message and its acknowledgement is returned."""
    first, second, gateway = _two()
    first.fail()
    sent = await gateway.send(MESSAGE)
    assert (first.sent, second.sent, sent.provider_ref) == ([], [MESSAGE], "recorded-1")


async def test_when_every_provider_fails_the_message_fails():
    """DeliveryFailed once the last provider has failed too."""
    first, second, gateway = _two()
    first.fail()
    second.fail()
    with pytest.raises(DeliveryFailed):
        await gateway.send(MESSAGE)

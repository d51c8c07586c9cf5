"""An answer that is not the request's (an outside audit, T5), through the gateway and an SMSC of our own.

A generic_nack of status 0, or an enquire_link_resp on the submit_sm's sequence number, was read as the
SMSC's acceptance: SENT, with nothing at the SMSC. A generic_nack of status 0, or a bind_transceiver_resp
for another sequence number, was logged "SMPP bound". Only the request's own response (submit_sm_resp,
bind_transceiver_resp, for its sequence) accepts; a generic_nack is a refusal with its status."""

from __future__ import annotations

import asyncio

import pytest

from sesame.clients import smpp_pdu as pdu
from sesame.clients import smpp_status
from sesame.clients.sms_smpp import SmppSmsGateway
from sesame.server.domain.errors import DeliveryFailed
from sesame.server.domain.model import SmsMessage
from tests.fakes.clock import ShiftedClock
from tests.support.odd_smsc import OddSmsc, config_for

pytestmark = pytest.mark.integration

THROTTLED = smpp_status.ESME_RTHROTTLED
MESSAGE = SmsMessage("+33612345678", "MaBanque: code 482913", "ch.k1.d6")


def _gateway(smsc: OddSmsc) -> SmppSmsGateway:
    return SmppSmsGateway(config_for(smsc.port, seconds=1.0), ShiftedClock())


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((pdu.GENERIC_NACK, pdu.ESME_ROK), "error"),
        ((pdu.ENQUIRE_LINK | pdu.RESPONSE, pdu.ESME_ROK), "error"),
        ((pdu.GENERIC_NACK, THROTTLED), "throttled"),
    ],
)
async def test_a_submit_answered_by_another_command_is_not_sent(answer: tuple[int, int], reason: str):
    """The submit_sm fails with the reason its answer gives: never an acknowledgement."""
    smsc = OddSmsc(submit_answer=answer)
    async with smsc.serving():
        gateway = _gateway(smsc)
        await gateway.start()
        try:
            async with asyncio.timeout(10):
                while not gateway.bound:  # noqa: ASYNC110 (the gateway's own task binds)
                    await asyncio.sleep(0.02)
            with pytest.raises(DeliveryFailed) as failed:
                await gateway.send(MESSAGE)
        finally:
            await gateway.close()
    assert failed.value.reason == reason


@pytest.mark.parametrize(
    "bind_answer",
    [(pdu.GENERIC_NACK, pdu.ESME_ROK, 0), (pdu.BIND_TRANSCEIVER | pdu.RESPONSE, pdu.ESME_ROK, 7)],
    ids=["generic_nack status 0", "another sequence"],
)
async def test_a_bind_answered_by_another_pdu_does_not_bind(bind_answer: tuple[int, int, int]):
    """No session is bound, and the message fails `unreachable` (the next provider's turn)."""
    smsc = OddSmsc(bind_answer=bind_answer)
    async with smsc.serving():
        gateway = _gateway(smsc)
        await gateway.start()
        try:
            await asyncio.sleep(0.3)  # the first attempt to bind answered, and failed
            assert not gateway.bound
            with pytest.raises(DeliveryFailed) as failed:
                await gateway.send(MESSAGE)
        finally:
            await gateway.close()
    assert failed.value.reason == "unreachable"
    assert smsc.submits == 0

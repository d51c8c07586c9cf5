"""A flood of receipts for one message (an outside audit, T6): one INFO line a minute per state, not one per
receipt (10,000 receipts wrote 10,000 lines), and the line says it recorded a report, not the state."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sesame.clients.sms_smpp import SmppSmsGateway
from sesame.server.domain.model import DeliveryState, SmsMessage
from tests.fakes.clock import ShiftedClock
from tests.support.odd_smsc import OddSmsc, bound, config_for

pytestmark = pytest.mark.integration

FLOOD = 300


async def test_a_receipt_flood_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sesame.sms")
    recorded: list[DeliveryState] = []

    async def record(challenge_id: str, state: DeliveryState, provider_ref: str, provider_id: str) -> None:
        recorded.append(state)

    smsc = OddSmsc()
    async with smsc.serving():
        gateway = SmppSmsGateway(config_for(smsc.port), ShiftedClock(), record)
        async with bound(gateway), asyncio.timeout(20):
            sent = await gateway.send(SmsMessage("+33612345678", "MaBanque: code 482913", "ch.k1.d6"))
            smsc.push(sent.provider_ids[0], "UNDELIV", FLOOD)
            while len(recorded) < FLOOD:  # noqa: ASYNC110 (the SMSC's doing)
                await asyncio.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("delivery receipt")]
    assert len(lines) == 1
    assert "UNDELIV, recorded as a failed report" in lines[0]

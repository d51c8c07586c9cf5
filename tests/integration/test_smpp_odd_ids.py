"""SMSC message ids that are no ids (an outside audit, T3 and T4), through the gateway and an SMSC of our own.

A 60 KiB id was journaled (122 KB of provider_id) and made Redis key names, ids with spaces broke the
journal's space-separated format, non-ASCII ids collided as replacement characters, and every message
answered with an empty id stayed in the receipt book for good. Decision 0041's rule, Kannel's, now applies
to SMPP too: an id outside it is not kept, the SMS is sent all the same, and one line a minute says so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from sesame.clients.sms_smpp import SmppSmsGateway
from sesame.server.domain.model import DeliveryState, SmsMessage
from tests.fakes.clock import ShiftedClock
from tests.support.odd_smsc import OddSmsc, bound, config_for

pytestmark = pytest.mark.integration

ODD: dict[str, bytes] = {
    "60 KiB": b"7" * 61440,
    "a space": b"A B",
    "empty": b"",
    "non-ASCII": "\u00e9t\u00e9".encode("latin-1"),
    "past 64": b"f" * 65,
}


async def _record(challenge_id: str, state: DeliveryState, provider_ref: str, provider_id: str) -> None:
    pass


async def _sent_with(message_id: Callable[[int], bytes], count: int) -> tuple[list[tuple[str, ...]], int]:
    """The provider ids of `count` messages sent through an SMSC answering each with `message_id`, and the
    messages the gateway's receipt book kept after them."""
    smsc = OddSmsc(message_id=message_id)
    async with smsc.serving():
        gateway = SmppSmsGateway(config_for(smsc.port, rate=1000.0), ShiftedClock(), _record)
        async with bound(gateway), asyncio.timeout(20):
            ids = [
                (await gateway.send(SmsMessage("+33612345678", f"code {n:06d}", f"ch.{n}"))).provider_ids
                for n in range(count)
            ]
    return ids, len(gateway._book)  # what the audit measured: the book's size


@pytest.mark.parametrize("odd", list(ODD))
async def test_an_id_outside_the_rule_is_not_kept_and_said_once(odd: str, caplog: pytest.LogCaptureFixture):
    """Each message is sent, with no provider id; the book keeps none of them; one WARNING for 50."""
    caplog.set_level(logging.INFO, "sesame.sms")
    ids, kept = await _sent_with(lambda _: ODD[odd], 50)
    assert ids == [()] * 50
    assert kept == 0
    assert len([r for r in caplog.records if "message id not kept" in r.getMessage()]) == 1


async def test_an_id_given_again_keeps_one_message_and_valid_ids_are_journaled():
    """The same valid id for 50 messages (an SMSC that repeats them): each journals it, the book keeps one."""
    ids, kept = await _sent_with(lambda _: b"smsc:0a-1.b_2", 50)
    assert ids == [("smsc:0a-1.b_2",)] * 50
    assert kept == 1

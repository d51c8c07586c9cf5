"""Failover between real providers, one stopped in the middle of a run: Kannel (fake SMSC) and the
smpp34 SMSC simulator, both started by the tests. Every message reaches a phone; none twice, but for
those whose first provider's answer was lost (it may have taken them: decision 0030 says why they go on)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sesame.clients.sms_breaker import BreakerState
from sesame.clients.sms_failover import FailoverSmsGateway, Provider
from sesame.server.domain.model import SmsMessage
from tests.support.failover import BATCH, Attempts, kannel_gateway, reliability, smpp_gateway
from tests.support.kannel import Kannel, running_kannel
from tests.support.smsc import Cable, Smsc, serving

pytestmark = pytest.mark.integration

PHONE = "+33612345678"
RUN = 500  # messages in one run


async def _run(gateway: FailoverSmsGateway, marker: str, stop_at: int, stop: asyncio.Event) -> None:
    """Send RUN messages BATCH at a time; `stop` is set once `stop_at` have been acknowledged."""
    for first in range(0, RUN, BATCH):
        if first >= stop_at:
            stop.set()
        messages = [
            SmsMessage(PHONE, f"MaBanque: code 482913 {marker}-{index:04d}.", "ch.k1.d6")
            for index in range(first, first + BATCH)
        ]
        await asyncio.gather(*(gateway.send(message) for message in messages))


def _counts(texts: list[str], marker: str) -> Counter[str]:
    return Counter(text.split(f"{marker}-")[1][:4] for text in texts if f"{marker}-" in text)


async def _at_kannel(kannel: Kannel, marker: str, missing: set[str]) -> Counter[str]:
    """The run's messages at Kannel's fake SMSC once every index in `missing` is there (Kannel queues)."""
    async with asyncio.timeout(30):
        while True:
            got = _counts([m.text for m in await asyncio.to_thread(kannel.messages)], marker)
            if missing <= set(got):
                return got
            await asyncio.sleep(0.1)


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    """The SMPP simulator, receipts off (the run counts submits)."""
    async with serving(Smsc(receipt=None)) as running:
        yield running


async def test_the_smsc_cut_mid_run_every_message_goes_through_kannel_then_smpp_again(
    smsc: Smsc, kannel: Kannel
):
    """SMPP first, cut after 200 of 500: the rest go through Kannel, none lost, none twice but for those
    whose SMPP answer was lost; once the SMSC is back, the half-open trial closes its breaker again."""
    cable = Cable(smsc.port)
    await cable.start()
    smpp, http, attempts = smpp_gateway(cable.port), kannel_gateway(kannel), Attempts()
    await smpp.start()
    gateway = FailoverSmsGateway([Provider("smpp", smpp), Provider("kannel", http)], reliability(), attempts)
    marker, stop = f"r{uuid.uuid4().hex[:8]}", asyncio.Event()

    async def cut() -> None:
        await stop.wait()
        await cable.close()

    cutter = asyncio.create_task(cut())
    await _run(gateway, marker, 200, stop)
    await cutter
    through_smpp = _counts([part.text for part in smsc.submitted], marker)
    every = {f"{index:04d}" for index in range(RUN)}
    through_kannel = await _at_kannel(kannel, marker, every - set(through_smpp))
    both = through_smpp + through_kannel
    assert set(both) == every
    twice = [index for index, count in both.items() if count > 1]
    assert len(twice) <= attempts.unknown("smpp")
    assert max(both.values()) <= 2
    assert 200 <= len(through_smpp) < RUN
    assert ("smpp", BreakerState.OPEN) in attempts.breakers

    # The SMSC back on the same port: after the open period one trial goes to SMPP and closes its breaker.
    back = Cable(smsc.port)
    back.port = cable.port
    await back.start()
    await asyncio.sleep(1.1)
    await gateway.send(SmsMessage(PHONE, f"MaBanque: code 482913 {marker}-back.", "ch.k1.d6"))
    async with asyncio.timeout(10):
        while gateway.breaker_states()["smpp"] is not BreakerState.CLOSED:
            await asyncio.sleep(0.2)
            await gateway.send(SmsMessage(PHONE, f"MaBanque: code 482913 {marker}-back.", "ch.k1.d6"))
    assert attempts.breakers[-2:] == [("smpp", BreakerState.HALF_OPEN), ("smpp", BreakerState.CLOSED)]
    await smpp.close()
    await http.close()
    await back.close()


async def test_kannel_stopped_mid_run_every_message_goes_throughsmpp_gateway(smsc: Smsc, tmp_path: Path):
    """A private Kannel first, shut down after 200 of 500: the rest go through SMPP, none lost, none
    twice but for those whose Kannel answer was lost; its breaker opens so it is no longer asked."""
    with contextlib.ExitStack() as stack:
        kannel = stack.enter_context(running_kannel(tmp_path))
        smpp, http, attempts = smpp_gateway(smsc.port), kannel_gateway(kannel), Attempts()
        await smpp.start()
        gateway = FailoverSmsGateway(
            [Provider("kannel", http), Provider("smpp", smpp)], reliability(), attempts
        )
        marker, stop = f"r{uuid.uuid4().hex[:8]}", asyncio.Event()

        async def shut_down() -> None:
            await stop.wait()
            await asyncio.to_thread(stack.close)

        stopper = asyncio.create_task(shut_down())
        await _run(gateway, marker, 200, stop)
        await stopper
        through_kannel = _counts([m.text for m in kannel.messages()], marker)
        through_smpp = _counts([part.text for part in smsc.submitted], marker)
        both = through_smpp + through_kannel
        assert set(both) == {f"{index:04d}" for index in range(RUN)}
        assert len([index for index, count in both.items() if count > 1]) <= attempts.unknown("kannel")
        assert 200 <= len(through_kannel) < RUN
        assert gateway.breaker_states()["kannel"] is BreakerState.OPEN
        assert attempts.outcomes["kannel", "open"] > 0
        await smpp.close()
        await http.close()

"""A burst paced behind one `unbind` from the SMSC (an outside audit, T1): every message waits for the bind
that follows and goes there, and the provider's circuit breaker stays closed.

Before, `send` took the session once and each part, woken at its pacing slot after the drop, was submitted
on that closed session: `unreachable`, each a breaker fault, so that the breaker opened right after the
rebind and 14 to 17 codes of 30, never submitted, were dead-lettered."""

from __future__ import annotations

import asyncio

import pytest

from sesame.clients.sms_breaker import BreakerSettings, BreakerState
from sesame.clients.sms_failover import FailoverSmsGateway, Provider, Reliability
from sesame.clients.sms_policy import RetryPolicy
from sesame.clients.sms_smpp import SmppSmsGateway
from sesame.server.domain.errors import DeliveryFailed
from sesame.server.domain.model import SmsMessage
from tests.fakes.clock import ShiftedClock
from tests.support.failover import Attempts
from tests.support.odd_smsc import config_for
from tests.support.smsc import Smsc, serving

pytestmark = pytest.mark.integration

BURST = 20  # at 10 submit_sm a second: 2 s of pacing, the unbind comes in the middle of it


async def test_a_burst_paced_behind_an_unbind_is_sent_on_the_next_session() -> None:
    async with serving(Smsc()) as smsc:
        smpp = SmppSmsGateway(
            config_for(smsc.port, seconds=3.0),
            ShiftedClock(),
        )
        attempts = Attempts()
        # The defaults: two retries, a breaker opened by five faults in a row.
        reliability = Reliability(
            retry=RetryPolicy(retries=2, base_seconds=0.2), breaker=BreakerSettings(failures=5)
        )
        gateway = FailoverSmsGateway([Provider("smpp", smpp)], reliability, attempts)
        await smpp.start()
        try:
            async with asyncio.timeout(20):
                while not smpp.bound:  # noqa: ASYNC110 (the gateway's own task binds)
                    await asyncio.sleep(0.02)
                sends = [
                    asyncio.create_task(gateway.send(SmsMessage("+33612345678", f"code {n:06d}", f"ch.{n}")))
                    for n in range(BURST)
                ]
                await asyncio.sleep(0.9)
                await smsc.unbind_all()
                results = await asyncio.gather(*sends, return_exceptions=True)
        finally:
            await smpp.close()
    # A submit_sm written as the unbind crossed it may go unanswered: `lost` (the SMSC may have it), at most
    # the one in flight then (10 a second, answered in a millisecond). Nothing else fails.
    failed = [result.reason for result in results if isinstance(result, DeliveryFailed)]
    assert failed in ([], ["lost"])
    assert smsc.binds == 2
    # Every code reached the SMSC once (the lost one too: its answer went with the session).
    assert sorted(part.text for part in smsc.submitted) == [f"code {n:06d}" for n in range(BURST)]
    assert dict(attempts.outcomes) == {("smpp", "sent"): BURST - len(failed)} | (
        {("smpp", "lost"): 1} if failed else {}
    )
    assert ("smpp", BreakerState.OPEN) not in attempts.breakers

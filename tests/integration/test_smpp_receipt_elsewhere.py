"""A receipt on another worker's session before the sending worker kept its SMSC id (an outside audit, T2).

Real SMSCs send a receipt on any bound session of the account, and `sesame serve` binds one per worker. The
receipt came before the sending worker had written the id to Redis (from a deferred task): the other worker
found nothing, answered ESME_ROK and parked it where nothing would match it; the challenge stayed SENT. Now
an id unknown in memory and in Redis is answered ESME_RX_T_APPN: the SMSC sends it again, and it is found."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from sesame.clients import smpp_pdu as pdu
from sesame.clients.redis_provider_ids import RedisProviderIds
from sesame.clients.sms_smpp import SmppSmsGateway
from sesame.server.domain.model import DeliveryState, SmsMessage
from tests.fakes.clock import ShiftedClock
from tests.support.odd_smsc import OddSmsc, bound, config_for

pytestmark = pytest.mark.integration


async def _until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 (the peer's doing, no Event of ours)
            await asyncio.sleep(0.02)


async def test_a_receipt_on_the_other_workers_session_before_the_id_is_kept_is_asked_again(
    redis_client: aioredis.Redis,
) -> None:
    """Two gateways (two workers) bound to one SMSC, which writes each part's UNDELIV receipt on the other
    session before the submit_sm_resp: the receipt is refused for now, sent again, and settles FAILED."""
    seen: list[tuple[str, DeliveryState]] = []

    async def record(challenge_id: str, state: DeliveryState, provider_ref: str, provider_id: str) -> None:
        seen.append((challenge_id, state))

    ids = RedisProviderIds(redis_client)
    smsc = OddSmsc(message_id=lambda n: f"x{n}-{id(seen)}".encode(), receipt_elsewhere="UNDELIV")
    async with smsc.serving():
        config = config_for(smsc.port)
        workers = [SmppSmsGateway(config, ShiftedClock(), record, ids) for _ in range(2)]
        for worker in workers:
            await worker.start()
        try:
            await _until(lambda: all(worker.bound for worker in workers))
            await workers[0].send(SmsMessage("+33612345678", "MaBanque: code 482913", "ch.k1.x2"))
            await _until(lambda: bool(seen))
        finally:
            for worker in workers:
                await worker.close()
    assert seen[0] == ("ch.k1.x2", DeliveryState.FAILED)
    assert smsc.deliver_answers[pdu.ESME_RX_T_APPN] >= 1


async def test_a_receipt_for_an_id_never_ours_is_let_go(
    redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by an outside audit: a receipt for an id unknown in memory and in Redis was refused for ever, and
    an SMSC that sends it again at once burned a core, unseen. Refused while the id is unknown less than
    `unknown_receipts_for`, then answered ESME_ROK, with one WARNING."""
    caplog.set_level("WARNING", "sesame.sms")
    smsc = OddSmsc(redeliver_after=0.05, redeliveries=1000)
    async with smsc.serving():
        config = dataclasses.replace(config_for(smsc.port), unknown_receipts_for=0.5)
        async with bound(SmppSmsGateway(config, ShiftedClock(), None, RedisProviderIds(redis_client))):
            smsc.push("never-ours-1", "UNDELIV", tries=1000)
            await _until(lambda: smsc.deliver_answers[pdu.ESME_ROK] == 1)
            asked_again = smsc.deliver_answers[pdu.ESME_RX_T_APPN]
            await asyncio.sleep(0.3)
    assert asked_again >= 2
    assert smsc.deliver_answers[pdu.ESME_RX_T_APPN] == asked_again  # let go: asked no more
    assert sum("unknown for 0.5 s: let go" in r.getMessage() for r in caplog.records) == 1

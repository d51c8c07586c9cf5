"""A receipt on another worker's session before the sending worker kept its SMSC id (an outside audit, T2).

Real SMSCs send a receipt on any bound session of the account, and `sesame serve` binds one per worker. The
receipt came before the sending worker had written the id to Redis (from a deferred task): the other worker
found nothing, answered ESME_ROK and parked it where nothing would match it; the challenge stayed SENT. Now
an id unknown in memory and in Redis is answered ESME_RX_T_APPN: the SMSC sends it again, and it is found."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from sesame.clients import smpp_pdu as pdu
from sesame.clients.redis_provider_ids import RedisProviderIds
from sesame.clients.sms_smpp import SmppSmsGateway
from sesame.server.domain.model import DeliveryState, SmsMessage
from tests.fakes.clock import ShiftedClock
from tests.support.odd_smsc import OddSmsc, config_for

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

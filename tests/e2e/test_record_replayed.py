"""A send's record that ran in Redis but whose answer was lost is asked again (decision 0055): the second
time it answers "already recorded" and journals nothing, so that one send has one `challenge.delivery`
entry (decision 0056). The answer is lost for real: a relay between the outbox's connections and the tests'
Redis cuts the connection right after Redis ran record_dispatch.lua, once. Before 0056 the step ran again
and journaled the same send twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_scripts import Scripts
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.dispatch_loop import DispatchSettings
from sesame.server.domain.errors import StoreUnavailable
from sesame.server.domain.model import DeliveryState
from tests.contracts.test_start_challenge_contract import an_opening
from tests.contracts.test_start_challenge_contract import enrolled as enrolled_u1
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled
from tests.e2e.test_send_guard import override_rpc
from tests.e2e.test_send_holds import code_sms, start
from tests.support.outbox import settled
from tests.support.reply_cutter import reply_cutter
from tests.support.wired_server import start_wired

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

QUEUE_ONLY = DispatchSettings(loops=0)  # the first server queues; the second's dispatcher sends


def script_sha(client: aioredis.Redis, script: str = "record_dispatch", program: str = "") -> bytes:
    """The SHA-1 a script runs under (EVALSHA carries it): the relay's marker. With `program`, the script
    with that risk program in its text (open_challenge, as Start runs it under rules: decision 0076)."""
    return Scripts(client).sha(script, program).encode()


async def deliveries(store: RedisState, challenge_id: str) -> list[dict[str, str]]:
    journal = await store.journal.challenge_journal(challenge_id)
    return [entry for entry in journal if entry["event"] == "challenge.delivery"]


async def test_the_adapter_asked_again_answers_already_recorded(
    redis_server: EmbeddedRedis, redis_store: RedisState, redis_client: aioredis.Redis
) -> None:
    """RedisOutbox.settle through the relay: the script runs, the answer is lost (redis-py sends it again
    on a new connection, or the caller does, as the dispatcher does): the last answer is False, and the
    challenge's journal holds one delivery entry."""
    await enrolled_u1(redis_store)
    opened = (await redis_store.challenges.start_challenge(an_opening())).challenge
    with reply_cutter(redis_server.port) as cutter:
        outbox = RedisOutbox.from_url(f"redis://127.0.0.1:{cutter.port}/0")
        try:
            (queued,) = await outbox.take("a", 10, DispatchSettings().wait)
            cutter.arm(script_sha(redis_client))
            at = datetime.now(UTC)
            try:
                answered = await outbox.settle(queued, DeliveryState.SENT, "console-1", at)
            except StoreUnavailable:
                answered = await outbox.settle(queued, DeliveryState.SENT, "console-1", at)
            assert cutter.cuts == 1
            assert answered is False
        finally:
            await outbox.close()
    assert len(await deliveries(redis_store, opened.challenge_id)) == 1
    assert (await redis_store.challenges.get_challenge(opened.challenge_id)).delivery is DeliveryState.SENT


@pytest.mark.parametrize("dispatch", [QUEUE_ONLY])
async def test_a_dispatchers_record_whose_answer_is_lost_journals_the_send_once(
    live: Live, keystore: Pkcs11KeyStore, redis_server: EmbeddedRedis, redis_client: aioredis.Redis
) -> None:
    """Start through the real server; a second worker, whose Redis connections go through the relay,
    dispatches: the gateway takes the SMS, the record's answer is lost once; the SMS went once, the
    entry is settled, and the challenge's journal holds one delivery entry for it."""
    await enrolled(live)
    opened = await live.auth.StartChallenge(start())
    with reply_cutter(redis_server.port) as cutter:
        relayed = RedisState.on(aioredis.Redis.from_url(f"redis://127.0.0.1:{cutter.port}/0"))
        cutter.arm(script_sha(redis_client))
        wired = await start_wired(keystore, relayed, live.sms_file)
        try:
            await settled(live.store)
        finally:
            await wired.server.stop(0)
            await relayed.close()
        assert cutter.cuts == 1
    assert code_sms(live.sms_file) == [opened.challenge_id]
    (delivery,) = await deliveries(live.store, opened.challenge_id)
    assert delivery["outcome"] == "sent"
    assert (await live.store.challenges.get_challenge(opened.challenge_id)).delivery is DeliveryState.SENT


@pytest.mark.parametrize("dispatch", [QUEUE_ONLY])
async def test_a_notices_record_whose_answer_is_lost_journals_it_once(
    live: Live, keystore: Pkcs11KeyStore, redis_server: EmbeddedRedis, redis_client: aioredis.Redis
) -> None:
    """An override's notice to the old number (decision 0041), dispatched by a worker behind the relay,
    the answer of record_notice.lua lost once: one notice sent, one `user.notice` in the user's journal."""
    await enrolled(live)
    await override_rpc(live)
    with reply_cutter(redis_server.port) as cutter:
        relayed = RedisState.on(aioredis.Redis.from_url(f"redis://127.0.0.1:{cutter.port}/0"))
        cutter.arm(script_sha(redis_client, "record_notice"))
        wired = await start_wired(keystore, relayed, live.sms_file)
        try:
            await settled(live.store)
        finally:
            await wired.server.stop(0)
            await relayed.close()
        assert cutter.cuts == 1
    assert len(live.sms_file.read_text().splitlines()) == 1
    journal = await live.store.users.user_journal("alice")
    (notice,) = [entry for entry in journal if entry["event"] == "user.notice"]
    assert (notice["kind"], notice["outcome"]) == ("phone_changed", "sent")

"""Nothing an outside caller can repeat grows Redis without a bound, and evidence is read by page, through a
real gRPC server, real Redis and SoftHSM.

The attack: 6,000 VerifyChallenge calls with the right code on a spent challenge wrote 6,000 journal entries
of about 1.5 KB that never expire, until `sesame evidence` and default gRPC clients could no longer read the
challenge's evidence (4 MB message limit). Refused resends and cancels did the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.server.grpc.evidence_client import fetch_evidence
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, started, verify

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPEATS = 2000
BATCH = 50  # calls in flight at once


async def footprint(live: Live, client: aioredis.Redis, challenge_id: str) -> dict[str, int]:
    """The journal's length and the bytes each of the challenge's keys takes in Redis."""
    keys = live.store.keys
    named = {
        "challenge": keys.challenge(challenge_id),
        "journal": keys.challenge_journal(challenge_id),
        "refusals": keys.challenge_refusals(challenge_id),
    }
    sizes = {name: await client.memory_usage(key) or 0 for name, key in named.items()}
    return {"entries": await client.xlen(named["journal"]), **sizes}


async def repeat(call: Callable[[], Awaitable[Any]], times: int) -> None:
    """Await `call()` `times` times, BATCH at a time; refusals that raise are the point, not errors."""
    for start in range(0, times, BATCH):
        await asyncio.gather(*(call() for _ in range(min(BATCH, times - start))), return_exceptions=True)


async def test_refused_verifies_on_a_spent_challenge_leave_redis_as_it_was(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """2,000 right codes on a verified challenge: journal length and every key's memory stay constant."""
    challenge_id, code = await started(live, await enrolled(live))
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_ALREADY_USED
    before = await footprint(live, redis_client, challenge_id)
    await repeat(lambda: verify(live, challenge_id, code), REPEATS)
    assert await footprint(live, redis_client, challenge_id) == before
    [count] = await live.store.journal.challenge_refusals(challenge_id)
    assert (count.event, count.outcome, count.count) == (
        "challenge.verification",
        "already_used",
        REPEATS + 1,
    )


async def test_refused_resends_and_cancels_leave_the_journal_as_it_was(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Hundreds of resends and cancels of a cancelled challenge add nothing after their first refusal."""
    challenge_id, _ = await started(live, await enrolled(live))
    request = auth_pb.CancelChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
    await live.auth.CancelChallenge(request)
    resend = auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
    for call in (lambda: live.auth.CancelChallenge(request), lambda: live.auth.ResendChallenge(resend)):
        with pytest.raises(grpc.aio.AioRpcError):
            await call()
    before = await footprint(live, redis_client, challenge_id)
    await repeat(lambda: live.auth.CancelChallenge(request), 300)
    await repeat(lambda: live.auth.ResendChallenge(resend), 300)
    assert await footprint(live, redis_client, challenge_id) == before


async def test_the_evidence_of_a_hammered_challenge_reads_page_by_page(live: Live) -> None:
    """Pages of 2 give the whole journal; `sesame evidence` follows them and reports the refusal counts."""
    challenge_id, code = await started(live, await enrolled(live))
    await verify(live, challenge_id, code)
    await repeat(lambda: verify(live, challenge_id, code), 300)
    stub = evidence_grpc.EvidenceServiceStub(live.channel)
    pages, token = [], ""
    while True:
        page = await stub.GetChallengeEvidence(
            evidence_pb.GetChallengeEvidenceRequest(challenge_id=challenge_id, page_size=2, page_token=token)
        )
        pages.append(page)
        if not (token := page.next_page_token):
            break
    journal = [dict(entry.fields) for page in pages for entry in page.journal]
    assert [e["outcome"] for e in journal] == ["opened", "sent", "verified", "issued", "already_used"]
    assert pages[0].proof
    assert not pages[-1].proof
    assert [(r.outcome, r.count) for r in pages[-1].refusals] == [("already_used", 300)]
    record = await asyncio.to_thread(fetch_evidence, live.address, challenge_id)
    assert [e["outcome"] for e in record.journal] == [e["outcome"] for e in journal]
    assert (record.proof, record.refusals[0]["count"]) == (pages[0].proof, "300")


@pytest.mark.parametrize(("size", "token"), [(-1, ""), (1001, ""), (10, "not-a-token")])
async def test_a_bad_page_is_invalid_argument(live: Live, size: int, token: str) -> None:
    """A page size out of 0..1000 or a made-up page token answers INVALID_ARGUMENT."""
    challenge_id, _ = await started(live, await enrolled(live))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await evidence_grpc.EvidenceServiceStub(live.channel).GetChallengeEvidence(
            evidence_pb.GetChallengeEvidenceRequest(
                challenge_id=challenge_id, page_size=size, page_token=token
            )
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT

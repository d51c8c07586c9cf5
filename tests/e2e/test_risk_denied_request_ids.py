"""Denied Starts with a new request id each, through `sesame serve` and its Redis: each denial claimed its
request id with a key of its own, kept for the code's lifetime (5 minutes), and a denial charges no send
budget, so a loop of them wrote one key a call without a bound (2,000 denied Starts: 2,000 keys, +0.4 MB, for
five minutes; a thousand a second: 300,000 keys). A request id is claimed only with a denial journaled, the
user's first 20 of the hour (decision 0137): its retry is answered as before, journaled nothing more."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.e2e.helpers import PHONE, transfer
from tests.e2e.test_risk import risk_denied
from tests.support.serve_process import served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

JOURNALED_DENIALS = 20  # per user and hour (open_challenge.lua)
DENIED = 500
AT_ONCE = 25
RULES = """version = "test-0137"

[[rules]]
id = "deny-large"
description = "A transfer of 50,000 EUR or more"
when = [["operation", "==", "credit_transfer"], ["amount", ">=", 50000]]
decision = "DENY"
reason = "LARGE_AMOUNT"
"""


async def _claims(client: aioredis.Redis) -> int:
    return len([key async for key in client.scan_iter(match="*:request:*", count=1000)])


async def _denials(client: aioredis.Redis) -> int:
    """The denials journaled in the user's journal (a stream; sealed entries stay there until archived)."""
    count = 0
    async for key in client.scan_iter(match="*:journal:alice", count=1000):
        count += sum(fields.get(b"event") == b"risk.denied" for _, fields in await client.xrange(key))
    return count


def test_denied_starts_with_new_request_ids_claim_only_the_journaled_ones(tmp_path: Path) -> None:
    """500 denied Starts, a request id each: 20 claims in Redis (before: 500); a retry of a claimed one is
    answered RISK_DENIED as a retry and journals nothing; an unclaimed one is denied again."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    with served(tmp_path / "var", {"SESAME_RISK_RULES_FILE": str(rules)}) as serving:
        url = re.search(r"embedded redis-server started on (redis://\S+)", serving.output())
        assert url is not None, serving.output()[-2000:]
        asyncio.run(_flood(serving.address, url.group(1)))


async def _flood(address: str, url: str) -> None:
    big = transfer(amount_minor=10_000_000)
    client = aioredis.Redis.from_url(url)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            auth = auth_grpc.AuthenticationServiceStub(channel)
            await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
                enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=PHONE)
            )
            limit = asyncio.Semaphore(AT_ONCE)

            async def denied(rid: str) -> dict[str, str]:
                async with limit:
                    request = auth_pb.StartChallengeRequest(user_id="alice", operation=big, request_id=rid)
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await auth.StartChallenge(request)
                    return risk_denied(caught.value)

            for n in range(JOURNALED_DENIALS):  # in turn: the first 20 are the journaled ones
                assert (await denied(f"deny-{n}"))["reasons"] == "LARGE_AMOUNT"
            await asyncio.gather(*(denied(f"deny-{n}") for n in range(JOURNALED_DENIALS, DENIED)))
            assert await _claims(client) == JOURNALED_DENIALS
            journaled = await _denials(client)
            assert journaled == JOURNALED_DENIALS
            await denied("deny-0")  # a claimed request id's retry: answered again, nothing journaled
            assert await _claims(client) == JOURNALED_DENIALS
            assert await _denials(client) == journaled
    finally:
        await client.aclose()

"""A Timestamp no datetime can hold (seconds beyond year 9999 or before year 1, nanos outside a second) in
any request field is the caller's error: INVALID_ARGUMENT naming the field, nothing written; it answered
INTERNAL (a crash of the server, logged and counted as one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, snapshot, started, transfer, violations

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BAD = {
    "after-9999": Timestamp(seconds=253_402_300_800),
    "before-year-1": Timestamp(seconds=-62_135_596_801),
    "huge": Timestamp(seconds=2**62),
    "negative-nanos": Timestamp(seconds=1_700_000_000, nanos=-5),
    "nanos-past-a-second": Timestamp(seconds=1_700_000_000, nanos=2**31 - 1),
}


def _context(**fields: Any) -> op_pb.RequestContext:
    context = op_pb.RequestContext()
    context.CopyFrom(CONTEXT)
    for name, value in fields.items():
        getattr(context, name).CopyFrom(value)
    return context


def _factor(stamp: Timestamp) -> auth_pb.FirstFactor:
    return auth_pb.FirstFactor(
        category=auth_pb.FACTOR_CATEGORY_KNOWLEDGE, method="password", verified_at=stamp
    )


Call = Callable[[Live, str, Timestamp], Any]
CALLS: dict[str, tuple[str, Call]] = {
    "start-payee-first-used": (
        "context.payee_first_used",
        lambda live, _, t: live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(
                user_id="alice", operation=transfer(), context=_context(payee_first_used=t)
            )
        ),
    ),
    "start-account-opened": (
        "context.account.opened_at",
        lambda live, _, t: live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(
                user_id="alice",
                operation=transfer(),
                context=_context(account=op_pb.AccountSummary(opened_at=t)),
            )
        ),
    ),
    "start-first-factor": (
        "first_factor.verified_at",
        lambda live, _, t: live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(
                user_id="alice", operation=transfer(), context=CONTEXT, first_factor=_factor(t)
            )
        ),
    ),
    "verify-first-factor": (
        "first_factor.verified_at",
        lambda live, challenge_id, t: live.auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=challenge_id,
                code="000000",
                operation=transfer(),
                context=CONTEXT,
                first_factor=_factor(t),
            )
        ),
    ),
    "user-evidence-since": (
        "since",
        lambda live, _, t: evidence_grpc.EvidenceServiceStub(live.channel).GetUserEvidence(
            evidence_pb.GetUserEvidenceRequest(user_id="alice", since=t)
        ),
    ),
    "user-evidence-until": (
        "until",
        lambda live, _, t: evidence_grpc.EvidenceServiceStub(live.channel).GetUserEvidence(
            evidence_pb.GetUserEvidenceRequest(user_id="alice", until=t)
        ),
    ),
}


@pytest.mark.parametrize("call", list(CALLS))
async def test_a_timestamp_out_of_range_is_invalid_argument_and_writes_nothing(
    live: Live, redis_client: aioredis.Redis, call: str
) -> None:
    """Each Timestamp field of each request, with each kind of impossible instant: INVALID_ARGUMENT on the
    field, Redis unchanged."""
    challenge_id, _ = await started(live, await enrolled(live, "alice"))
    path, send = CALLS[call]
    before = await snapshot(redis_client)
    for name, stamp in BAD.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await send(live, challenge_id, stamp)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, name
        assert path in violations(refused.value), name
    assert await snapshot(redis_client) == before

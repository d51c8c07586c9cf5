"""Both factors through the real server: the first factor the caller asserts is checked, journaled with the
start and the attempt, and named in the proof's `amr` with the calling service (`azp`) (decision 0035)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients import redis_records as rec
from sesame.clients.redis_keys import Keyspace
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, PHONE, enrolled, snapshot, started, transfer, violations
from tests.e2e.test_caller_rights import Bank, bank  # noqa: F401 (the mTLS server with the example policy)
from tests.support.jws import claims_of, verified_claims
from tests.support.pki import BACKOFFICE, PAYMENTS

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def factor(
    at: datetime,
    method: str = "password",
    category: int = auth_pb.FACTOR_CATEGORY_KNOWLEDGE,
    reference: str = "",
) -> auth_pb.FirstFactor:
    """A first factor as a caller sends it."""
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return auth_pb.FirstFactor(category=category, method=method, verified_at=stamp, reference=reference)


async def journal(client: aioredis.Redis, challenge_id: str) -> list[dict[str, str]]:
    """The challenge's journal entries as stored in Redis, oldest first."""
    entries = await client.xrange(Keyspace().challenge_journal(challenge_id))
    return [rec.decoded(fields) for _, fields in entries]


def one(entries: list[dict[str, str]], event: str) -> dict[str, str]:
    """The one entry of `event`."""
    (found,) = [entry for entry in entries if entry["event"] == event]
    return found


async def test_the_proof_names_both_factors_and_the_calling_service(
    bank: Bank,  # noqa: F811 (the fixture imported above)
    redis_client: aioredis.Redis,
) -> None:
    """A device binding at Start and a password at Verify over mTLS: both journaled with the caller, and the
    proof names both (amr mfa+otp+pwd+sms+swk; first_factor the password, stated at Verify, with the binding
    stated at Start: decision 0042) and azp the payments service."""
    now = datetime.now(UTC)
    async with bank.channel(BACKOFFICE) as office:
        await enrol_grpc.EnrollmentServiceStub(office).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=PHONE)
        )
    async with bank.channel(PAYMENTS) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        binding = factor(
            now - timedelta(minutes=2), "device-binding", auth_pb.FACTOR_CATEGORY_POSSESSION, "db-77"
        )
        start = await auth.StartChallenge(
            auth_pb.StartChallengeRequest(
                user_id="alice", operation=transfer(), context=CONTEXT, first_factor=binding
            )
        )
        _, code = await read_code(bank.sms_file, start.challenge_id)
        password = factor(now - timedelta(seconds=30))
        reply = await auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=start.challenge_id,
                code=code,
                operation=transfer(),
                context=CONTEXT,
                first_factor=password,
            )
        )
        jwks = (await auth.GetProofKeys(auth_pb.GetProofKeysRequest())).jwks_json
        again = await auth.GetProof(auth_pb.GetProofRequest(challenge_id=start.challenge_id))
    assert reply.result == auth_pb.VERIFY_RESULT_VERIFIED
    claims = verified_claims(reply.proof, json.loads(jwks))
    assert claims["amr"] == ["mfa", "otp", "pwd", "sms", "swk"]
    assert claims["first_factor"] == {
        "category": "knowledge",
        "method": "password",
        "verified_at": int(password.verified_at.ToDatetime(tzinfo=UTC).timestamp()),
        "stated_at": ["verify"],
        "start": {
            "category": "possession",
            "method": "device-binding",
            "verified_at": int(binding.verified_at.ToDatetime(tzinfo=UTC).timestamp()),
            "ref": "db-77",
        },
    }
    assert claims["azp"] == PAYMENTS
    # GetProof signs the claims it reads back from the journal: the same factor and caller.
    assert claims_of(again.proof) == claims
    entries = await journal(redis_client, start.challenge_id)
    opened, attempt = one(entries, "challenge.opened"), one(entries, "challenge.verification")
    assert {k: opened[k] for k in ("factor_category", "factor_method", "factor_ref", "caller")} == {
        "factor_category": "possession",
        "factor_method": "device-binding",
        "factor_ref": "db-77",
        "caller": PAYMENTS,
    }
    # Times are journaled to the millisecond, as every journal time.
    assert opened["factor_at"] == binding.verified_at.ToDatetime(tzinfo=UTC).isoformat(
        timespec="milliseconds"
    )
    assert (attempt["factor_method"], attempt["factor_category"], attempt["caller"]) == (
        "password",
        "knowledge",
        PAYMENTS,
    )


async def _verified_with(
    live: Live, at_start: auth_pb.FirstFactor | None, at_verify: auth_pb.FirstFactor | None
) -> tuple[str, str]:
    """A transfer started and verified with those first factors: its challenge id and proof."""
    user_id = await enrolled(live)
    start = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id=user_id, operation=transfer(), context=CONTEXT, first_factor=at_start
        )
    )
    _, code = await read_code(live.sms_file, start.challenge_id)
    reply = await live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=start.challenge_id,
            code=code,
            operation=transfer(),
            context=CONTEXT,
            first_factor=at_verify,
        )
    )
    assert reply.result == auth_pb.VERIFY_RESULT_VERIFIED
    return start.challenge_id, reply.proof


async def _signed_again(live: Live, redis_client: aioredis.Redis, challenge_id: str) -> str:
    """GetProof once the kept proof and the challenge are gone: signed again from the journal's claims."""
    keys = live.store.keys
    await redis_client.delete(keys.challenge_proof(challenge_id), keys.challenge(challenge_id))
    return str((await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof)


async def test_a_factor_stated_at_start_only_is_named_by_the_proof(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """A password stated with Start, nothing with Verify: the proof names it (amr pwd and mfa, first_factor
    stated at start), and GetProof signs the same claims again from the journal."""
    password = factor(datetime.now(UTC) - timedelta(seconds=30), reference="login-9")
    challenge_id, jws = await _verified_with(live, password, None)
    claims = claims_of(jws)
    assert claims["amr"] == ["mfa", "otp", "pwd", "sms"]
    assert claims["first_factor"] == {
        "category": "knowledge",
        "method": "password",
        "verified_at": int(password.verified_at.ToDatetime(tzinfo=UTC).timestamp()),
        "ref": "login-9",
        "stated_at": ["start"],
    }
    again = await _signed_again(live, redis_client, challenge_id)
    assert again.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]


async def test_the_same_factor_at_start_and_verify_is_named_once(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The same device binding with both calls: one factor, stated at start and verify; no `mfa` (possession
    twice); GetProof signs the same claims again."""
    binding = factor(
        datetime.now(UTC) - timedelta(minutes=1), "device-binding", auth_pb.FACTOR_CATEGORY_POSSESSION
    )
    challenge_id, jws = await _verified_with(live, binding, binding)
    claims = claims_of(jws)
    assert claims["amr"] == ["otp", "sms", "swk"]
    assert claims["first_factor"]["stated_at"] == ["start", "verify"]
    assert "start" not in claims["first_factor"]
    again = await _signed_again(live, redis_client, challenge_id)
    assert again.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]


async def test_a_possession_first_factor_is_not_named_mfa(live: Live) -> None:
    """A device binding and the SMS are both possession (RTS Art. 4(1) wants two categories): no `mfa`."""
    challenge_id, code = await started(live, await enrolled(live))
    binding = factor(datetime.now(UTC), "hardware-key", auth_pb.FACTOR_CATEGORY_POSSESSION)
    reply = await live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=challenge_id, code=code, operation=transfer(), context=CONTEXT, first_factor=binding
        )
    )
    assert claims_of(reply.proof)["amr"] == ["hwk", "otp", "sms"]


async def test_without_a_first_factor_the_proof_names_the_sms_factor_only(live: Live) -> None:
    """No first factor asserted: amr is the SMS code's, no first_factor claim, no azp without mTLS."""
    challenge_id, code = await started(live, await enrolled(live))
    reply = await live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=challenge_id, code=code, operation=transfer(), context=CONTEXT
        )
    )
    claims = claims_of(reply.proof)
    assert (claims["amr"], "first_factor" in claims, "azp" in claims) == (["otp", "sms"], False, False)


@pytest.mark.parametrize(
    ("shift", "reason"), [(timedelta(minutes=1), "in the future"), (timedelta(hours=-2), "older than")]
)
async def test_a_start_with_a_future_or_stale_first_factor_is_refused_and_writes_nothing(
    live: Live, redis_client: aioredis.Redis, shift: timedelta, reason: str
) -> None:
    """StartChallenge: INVALID_ARGUMENT on first_factor.verified_at, no key written, no SMS."""
    await enrolled(live)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(
                user_id="alice",
                operation=transfer(),
                context=CONTEXT,
                first_factor=factor(datetime.now(UTC) + shift),
            )
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason in violations(raised.value)["first_factor.verified_at"]
    assert await snapshot(redis_client) == before


async def test_a_verify_with_a_stale_first_factor_counts_no_attempt(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """VerifyChallenge with a first factor two hours old: INVALID_ARGUMENT, nothing written, and the right
    code still verifies afterwards with a fresh one."""
    challenge_id, code = await started(live, await enrolled(live))
    before = await snapshot(redis_client)
    stale = factor(datetime.now(UTC) - timedelta(hours=2))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await live.auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=challenge_id,
                code=code,
                operation=transfer(),
                context=CONTEXT,
                first_factor=stale,
            )
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(raised.value)) == {"first_factor.verified_at"}
    assert await snapshot(redis_client) == before


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        (auth_pb.FirstFactor(method="password"), "first_factor.category"),
        (
            auth_pb.FirstFactor(category=auth_pb.FACTOR_CATEGORY_KNOWLEDGE, method="magic"),
            "first_factor.method",
        ),
        (
            auth_pb.FirstFactor(category=auth_pb.FACTOR_CATEGORY_POSSESSION, method="password"),
            "first_factor.category",
        ),
        (
            auth_pb.FirstFactor(category=auth_pb.FACTOR_CATEGORY_KNOWLEDGE, method="pin"),
            "first_factor.verified_at",
        ),
    ],
)
async def test_a_malformed_first_factor_is_refused_by_field(
    live: Live, redis_client: aioredis.Redis, sent: auth_pb.FirstFactor, field: str
) -> None:
    """No category, an unknown method, a method of another category, no time: INVALID_ARGUMENT naming it."""
    await enrolled(live)
    before = await snapshot(redis_client)
    request = auth_pb.StartChallengeRequest(user_id="alice", operation=transfer(), context=CONTEXT)
    request.first_factor.CopyFrom(sent)
    if field != "first_factor.verified_at":
        request.first_factor.verified_at.FromDatetime(datetime.now(UTC))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await live.auth.StartChallenge(request)
    assert field in violations(raised.value)
    assert await snapshot(redis_client) == before


async def test_a_category_past_the_enum_is_named_not_called_missing(live: Live) -> None:
    """A category number this server does not know (a newer caller's, or a wrong one) is told as such, with
    the categories it knows, where it once read "is required" as if none had been sent."""
    await enrolled(live)
    request = auth_pb.StartChallengeRequest(user_id="alice", operation=transfer(), context=CONTEXT)
    request.first_factor.category = 7  # type: ignore[assignment]  # an open enum: any int32 goes on the wire
    request.first_factor.method = "password"
    request.first_factor.verified_at.FromDatetime(datetime.now(UTC))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await live.auth.StartChallenge(request)
    assert violations(raised.value)["first_factor.category"] == (
        "7 is not one of FACTOR_CATEGORY_KNOWLEDGE, FACTOR_CATEGORY_POSSESSION, FACTOR_CATEGORY_INHERENCE"
    )

"""Bad lifecycle requests: INVALID_ARGUMENT with field reasons, unknown things NOT_FOUND; Redis untouched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, snapshot, violations

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

WHO = {"request_id": "r-1", "actor": "ops-42"}
CHALLENGE_ID = f"{'0' * 32}.k1.d6.u{'0' * 16}"  # well formed, never issued
OVERRIDE = {"operator": "agent-7", "reason": "identité vérifiée en agence"}


def phone_change(**fields: Any) -> enrol_pb.ChangeSecurePhoneRequest:
    request: dict[str, Any] = {
        "user_id": "alice",
        "new_phone": "+33698765432",
        "verified_challenge_id": CHALLENGE_ID,
        **WHO,
    }
    request.update(fields)
    return enrol_pb.ChangeSecurePhoneRequest(**{k: v for k, v in request.items() if v is not None})


def override(**fields: Any) -> enrol_pb.OverrideSecurePhoneRequest:
    request: dict[str, Any] = {"user_id": "alice", "new_phone": "+33698765432", **OVERRIDE, **WHO}
    request.update(fields)
    return enrol_pb.OverrideSecurePhoneRequest(**{k: v for k, v in request.items() if v is not None})


BAD_STATUS_CHANGES = [
    ({"user_id": "bad id", **WHO}, {"user_id"}),
    ({"user_id": "alice", "actor": "ops-42"}, {"request_id"}),
    ({"user_id": "alice", "request_id": "r-1"}, {"actor"}),
    ({"user_id": "alice", **WHO, "actor": "a" * 129}, {"actor"}),
    ({"user_id": "alice", **WHO, "reason": "r" * 257}, {"reason"}),
    ({"user_id": "alice", **WHO, "reason": "line\nbreak"}, {"reason"}),
]


@pytest.mark.parametrize("rpc", ["SuspendUser", "ReinstateUser", "RevokeUser"])
@pytest.mark.parametrize(("fields", "bad"), BAD_STATUS_CHANGES)
async def test_status_changes_report_each_bad_field_and_write_nothing(
    live: Live, redis_client: aioredis.Redis, rpc: str, fields: dict[str, str], bad: set[str]
) -> None:
    """A bad id, a missing request id or actor, an oversized or unprintable reason: named, nothing written."""
    await enrolled(live)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(live.enrol, rpc)(getattr(enrol_pb, f"{rpc}Request")(**fields))
    assert set(violations(caught.value)) == bad
    assert await snapshot(redis_client) == before


@pytest.mark.parametrize(("fields", "bad"), BAD_STATUS_CHANGES)
async def test_unblocks_report_each_bad_field_and_write_nothing(
    live: Live, redis_client: aioredis.Redis, fields: dict[str, str], bad: set[str]
) -> None:
    """UnblockUser checks as the other status changes do, and its reason is required."""
    await enrolled(live)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.UnblockUser(enrol_pb.UnblockUserRequest(**{"reason": "checked", **fields}))
    assert set(violations(caught.value)) == bad
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.UnblockUser(enrol_pb.UnblockUserRequest(user_id="alice", **WHO))
    assert set(violations(caught.value)) == {"reason"}
    assert await snapshot(redis_client) == before


BAD_PHONE_CHANGES = [
    ("landline", phone_change(new_phone="+33140000000"), {"new_phone"}),
    ("not E.164", phone_change(new_phone="0698765432"), {"new_phone"}),
    ("no challenge", phone_change(verified_challenge_id=None), {"verified_challenge_id"}),
    ("malformed challenge id", phone_change(verified_challenge_id="../x"), {"verified_challenge_id"}),
    ("no request id", phone_change(request_id=""), {"request_id"}),
    ("oversized context", phone_change(context=op_pb.RequestContext(ip="x" * 257)), {"context.ip"}),
]


@pytest.mark.parametrize(("label", "call", "bad"), BAD_PHONE_CHANGES, ids=[c[0] for c in BAD_PHONE_CHANGES])
async def test_phone_changes_report_each_bad_field_and_write_nothing(
    live: Live,
    redis_client: aioredis.Redis,
    label: str,
    call: enrol_pb.ChangeSecurePhoneRequest,
    bad: set[str],
) -> None:
    """The new number, the authority and who asked are checked before anything is read or written."""
    await enrolled(live)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.ChangeSecurePhone(call)
    assert set(violations(caught.value)) == bad, label
    assert await snapshot(redis_client) == before
    assert live.sms_file.read_text() == ""  # created at boot, never written


BAD_OVERRIDES = [
    ("landline", override(new_phone="+33140000000"), {"new_phone"}),
    ("no operator or reason", override(operator=None, reason=None), {"operator", "reason"}),
    ("oversized reason", override(reason="r" * 257), {"reason"}),
    ("no request id or actor", override(request_id=None, actor=None), {"request_id", "actor"}),
]


@pytest.mark.parametrize(("label", "call", "bad"), BAD_OVERRIDES, ids=[c[0] for c in BAD_OVERRIDES])
async def test_overrides_report_each_bad_field_and_write_nothing(
    live: Live,
    redis_client: aioredis.Redis,
    label: str,
    call: enrol_pb.OverrideSecurePhoneRequest,
    bad: set[str],
) -> None:
    """The new number, the operator, the reason and who asked are checked before anything is written."""
    await enrolled(live)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.OverrideSecurePhone(call)
    assert set(violations(caught.value)) == bad, label
    assert await snapshot(redis_client) == before
    assert live.sms_file.read_text() == ""  # created at boot, never written


async def test_termination_reports_a_bad_client_id(live: Live, redis_client: aioredis.Redis) -> None:
    """A client id outside the identifier alphabet is INVALID_ARGUMENT and nothing is written."""
    await enrolled(live)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.TerminateClient(enrol_pb.TerminateClientRequest(client_id="a b", **WHO))
    assert set(violations(caught.value)) == {"client_id"}
    assert await snapshot(redis_client) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda live: live.enrol.SuspendUser(enrol_pb.SuspendUserRequest(user_id="nobody", **WHO)),
        lambda live: live.enrol.RevokeUser(enrol_pb.RevokeUserRequest(user_id="nobody", **WHO)),
        lambda live: live.enrol.UnblockUser(
            enrol_pb.UnblockUserRequest(user_id="nobody", reason="checked", **WHO)
        ),
        lambda live: live.enrol.OverrideSecurePhone(override(user_id="nobody")),
        lambda live: live.enrol.TerminateClient(enrol_pb.TerminateClientRequest(client_id="nobody", **WHO)),
    ],
    ids=[
        "suspend-unknown-user",
        "revoke-unknown-user",
        "unblock-unknown-user",
        "override-unknown-user",
        "unknown-client",
    ],
)
async def test_unknown_things_are_not_found_and_nothing_is_written(
    live: Live, redis_client: aioredis.Redis, call: Callable[[Live], Awaitable[Any]]
) -> None:
    """Unknown users, challenges and clients are NOT_FOUND, and nothing is written."""
    await enrolled(live)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(live)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert await snapshot(redis_client) == before


async def test_a_request_id_reused_for_another_change_is_invalid(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The suspension's request id cannot revoke: INVALID_ARGUMENT on request_id, and nothing is written."""
    await enrolled(live)
    await live.enrol.SuspendUser(enrol_pb.SuspendUserRequest(user_id="alice", **WHO))
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.RevokeUser(enrol_pb.RevokeUserRequest(user_id="alice", **WHO))
    assert set(violations(caught.value)) == {"request_id"}
    assert await snapshot(redis_client) == before

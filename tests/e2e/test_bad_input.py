"""Bad input gets INVALID_ARGUMENT with field reasons, unknown things NOT_FOUND; Redis stays untouched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, IBAN, enrolled, keys_written, snapshot, started, transfer, violations

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NEVER_ISSUED = f"{'0' * 32}.k1.d6.u{'0' * 16}"  # a well-formed challenge id no server issued


def _transfer(**changes: Any) -> op_pb.Operation:
    fields: dict[str, Any] = {
        "currency": "EUR",
        "amount_minor": 1000,
        "name": "Jean DUPONT",
        "iban": IBAN,
        "tx": "t",
    }
    fields.update(changes)
    return op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency=fields["currency"], amount_minor=fields["amount_minor"]),
            payee=op_pb.Payee(name=fields["name"], iban=fields["iban"]),
            transaction_id=fields["tx"],
        )
    )


START_CASES = [
    (
        "malformed IBAN checksum",
        _transfer(iban="FR7630006000011234567890188"),
        "operation.credit_transfer.payee.iban",
    ),
    # Letters Python's upper case turns into ASCII (an outside audit's): a dotless i and `T60...` was bound
    # as the IBAN `IT60...`.
    (
        "IBAN with a dotless i",
        _transfer(iban="\u0131T60X0542811101000000123456"),
        "operation.credit_transfer.payee.iban",
    ),
    (
        "IBAN with a long s",
        _transfer(iban="\u017fE4550000000058398257466"),
        "operation.credit_transfer.payee.iban",
    ),
    (
        "IBAN with a ligature",
        _transfer(iban="\ufb0668000100010051845310112"),
        "operation.credit_transfer.payee.iban",
    ),
    # Whitespace other than a space (an outside audit's): api.md refuses it, and it was dropped as a space.
    (
        "IBAN with a tab",
        _transfer(iban="FR76\t3000 6000 0112 3456 7890 189"),
        "operation.credit_transfer.payee.iban",
    ),
    (
        "IBAN with a line break",
        _transfer(iban="FR76 3000 6000\n0112 3456 7890 189"),
        "operation.credit_transfer.payee.iban",
    ),
    ("zero amount", _transfer(amount_minor=0), "operation.credit_transfer.amount.amount_minor"),
    ("negative amount", _transfer(amount_minor=-5), "operation.credit_transfer.amount.amount_minor"),
    ("unknown currency", _transfer(currency="XYZ"), "operation.credit_transfer.amount.currency"),
    ("empty payee name", _transfer(name=""), "operation.credit_transfer.payee.name"),
    ("oversized payee name", _transfer(name="N" * 71), "operation.credit_transfer.payee.name"),
    # Whitespace other than a space in a name (an outside audit's): bound and printed as a space, and a name
    # long as sent passed as its collapsed form.
    ("payee name with a line break", _transfer(name="Jean\nDUPONT"), "operation.credit_transfer.payee.name"),
    ("payee name with a tab", _transfer(name="Jean\tDUPONT"), "operation.credit_transfer.payee.name"),
    (
        "payee name with a line separator",
        _transfer(name="Jean\u2028DUPONT"),
        "operation.credit_transfer.payee.name",
    ),
    (
        "payee name long with spaces",
        _transfer(name="Jean" + " " * 60 + "DUPONT SA"),
        "operation.credit_transfer.payee.name",
    ),
    (
        "payee name with a web address",
        _transfer(name="www.ma-banque.fr"),
        "operation.credit_transfer.payee.name",
    ),
    ("oversized transaction id", _transfer(tx="T" * 65), "operation.credit_transfer.transaction_id"),
    ("missing operation", None, "operation"),
    ("empty oneof", op_pb.Operation(), "operation"),
    (
        "landline new phone",
        op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone="+33140000000")),
        "operation.change_phone.new_phone",
    ),
]


@pytest.mark.parametrize(("label", "operation", "field"), START_CASES, ids=[c[0] for c in START_CASES])
async def test_start_rejects_bad_operation(
    live: Live, redis_client: aioredis.Redis, label: str, operation: op_pb.Operation | None, field: str
) -> None:
    """Each malformed operation names its field, and nothing is written to Redis."""
    user_id = await enrolled(live)
    before = await snapshot(redis_client)
    request = auth_pb.StartChallengeRequest(user_id=user_id, context=CONTEXT)
    if operation is not None:
        request.operation.CopyFrom(operation)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(request)
    assert field in violations(caught.value), label
    assert await snapshot(redis_client) == before


async def test_every_bad_field_is_reported_at_once(live: Live) -> None:
    """Several bad fields give several violations in one answer."""
    request = auth_pb.StartChallengeRequest(
        user_id="bad id",
        operation=_transfer(amount_minor=0, currency="eur"),
        context=op_pb.RequestContext(ip="x" * 300),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(request)
    assert set(violations(caught.value)) == {
        "user_id",
        "operation.credit_transfer.amount.amount_minor",
        "operation.credit_transfer.amount.currency",
        "context.ip",
    }


async def test_status_message_names_the_bad_fields_for_clients_without_rich_errors(live: Live) -> None:
    """The plain status message lists each bad field with its reason, and never echoes the value sent."""
    request = auth_pb.StartChallengeRequest(
        user_id="alice", operation=_transfer(iban="FR7630006000011234567890188", name="Q" * 71)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(request)
    message = caught.value.details() or ""
    assert message.startswith("invalid request: ")
    assert "operation.credit_transfer.payee.iban: is not a valid IBAN" in message
    assert "operation.credit_transfer.payee.name: must be at most 70 characters" in message
    assert "Q" * 71 not in message
    assert "FR7630006000011234567890188" not in message


@pytest.mark.parametrize(
    ("code", "field"),
    [("12345", "code"), ("1234567", "code"), ("12a456", "code"), ("", "code"), ("9" * 300, "code")],
)
async def test_verify_rejects_malformed_codes_without_counting(
    live: Live, redis_client: aioredis.Redis, code: str, field: str
) -> None:
    """A code of the wrong length or with non-digits is INVALID_ARGUMENT and spends no attempt."""
    challenge_id, _ = await started(live, await enrolled(live))
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(challenge_id=challenge_id, code=code, operation=transfer())
        )
    assert field in violations(caught.value)
    assert await snapshot(redis_client) == before


async def test_verify_rejects_missing_operation(live: Live) -> None:
    """The caller must say which operation it is about to execute."""
    challenge_id, code = await started(live, await enrolled(live))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.VerifyChallenge(auth_pb.VerifyChallengeRequest(challenge_id=challenge_id, code=code))
    assert "operation" in violations(caught.value)


async def test_verify_rejects_a_malformed_challenge_id(live: Live) -> None:
    """An id that is not one of ours is INVALID_ARGUMENT on challenge_id."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(challenge_id="../../etc", code="123456", operation=transfer())
        )
    assert "challenge_id" in violations(caught.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda live: live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id="nobody", operation=transfer(), context=CONTEXT)
        ),
        lambda live: live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="nobody")),
        lambda live: live.auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(challenge_id=NEVER_ISSUED, code="123456", operation=transfer())
        ),
        lambda live: live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=NEVER_ISSUED)),
    ],
    ids=["start-unknown-user", "get-unknown-user", "verify-unknown", "get-unknown"],
)
async def test_unknown_things_are_not_found(
    live: Live, redis_client: aioredis.Redis, call: Callable[[Live], Awaitable[Any]]
) -> None:
    """Unknown users and challenges are NOT_FOUND, and nothing is written."""
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(live)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert await snapshot(redis_client) == before


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"user_id": "", "client_id": "acme", "secure_phone": "+33612345678"}, "user_id"),
        ({"user_id": "u1", "client_id": "acme", "secure_phone": "0612345678"}, "secure_phone"),
        ({"user_id": "u1", "client_id": "acme", "secure_phone": "+33140000000"}, "secure_phone"),
        ({"user_id": "u1", "client_id": "", "secure_phone": "+33612345678"}, "client_id"),
        ({"user_id": "u1", "client_id": "acme", "secure_phone": "+33612345678", "locale": "de"}, "locale"),
    ],
)
async def test_enrol_rejects_bad_fields(
    live: Live, redis_client: aioredis.Redis, request_fields: dict[str, str], field: str
) -> None:
    """Bad ids, non-E.164 or landline numbers and unknown locales are refused before any write."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.EnrollUser(enrol_pb.EnrollUserRequest(**request_fields))
    assert field in violations(caught.value)
    assert await keys_written(redis_client) == []


@pytest.mark.parametrize("rpc", ["ResendChallenge", "CancelChallenge"])
async def test_resend_and_cancel_report_every_bad_field(
    live: Live, redis_client: aioredis.Redis, rpc: str
) -> None:
    """A missing challenge id and an oversized context field are both reported, and nothing is written."""
    before = await snapshot(redis_client)
    request_type = getattr(auth_pb, f"{rpc}Request")
    request = request_type(challenge_id="", context=op_pb.RequestContext(user_agent="u" * 257))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(live.auth, rpc)(request)
    assert set(violations(caught.value)) == {"challenge_id", "context.user_agent"}
    assert await snapshot(redis_client) == before

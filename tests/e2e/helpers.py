"""Requests the end-to-end tests build again and again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import redis.asyncio as aioredis
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import CollectorRegistry

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_keys import Keyspace
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live
from tests.support.console_sms import written

PHONE = "+33612345678"
IBAN = "FR7630006000011234567890189"
CONTEXT = op_pb.RequestContext(ip="198.51.100.4", device_id="dev-1", session_id="sess-1", user_agent="pytest")


def transfer(amount_minor: int = 125000, iban: str = IBAN, name: str = "Jean DUPONT") -> op_pb.Operation:
    """A credit transfer operation."""
    return op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=amount_minor),
            payee=op_pb.Payee(name=name, iban=iban),
            transaction_id="tx-1",
        )
    )


async def enrolled(live: Live, user_id: str = "alice") -> str:
    """Enrol a user with the test phone and return its id."""
    await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=PHONE)
    )
    return user_id


async def started(live: Live, user_id: str, operation: op_pb.Operation | None = None) -> tuple[str, str]:
    """Start a challenge and read its code from the console SMS file: (challenge_id, code)."""
    reply = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=operation or transfer(), context=CONTEXT)
    )
    _, code = await read_code(live.sms_file, reply.challenge_id)
    return reply.challenge_id, code


async def verify(
    live: Live, challenge_id: str, code: str, operation: op_pb.Operation | None = None
) -> auth_pb.VerifyChallengeResponse:
    """Submit a code for the default transfer (or `operation`)."""
    response: auth_pb.VerifyChallengeResponse = await live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=challenge_id, code=code, operation=operation or transfer(), context=CONTEXT
        )
    )
    return response


def sms_count(live: Live, challenge_id: str) -> int:
    """How many console SMS were written for `challenge_id` (its start's and its resends')."""
    return sum(sms["challenge_id"] == challenge_id for sms in written(live.sms_file))


def wrong(code: str) -> str:
    """A code of the same length that is certainly not `code`."""
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The google.rpc.BadRequest field violations carried by the error, by field path."""
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return {v.field: v.description for v in bad.field_violations}


def retry_info(error: grpc.aio.AioRpcError) -> bool:
    """Whether the refusal carries RetryInfo (when to try again) in its rich status."""
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw is None:
        return False
    retry = error_details_pb2.RetryInfo()
    return any(detail.Unpack(retry) for detail in status_pb2.Status.FromString(raw).details)


def shed_details(error: grpc.aio.AioRpcError | grpc.Call) -> tuple[str, float]:
    """The ErrorInfo reason and the RetryInfo delay (seconds) of an UNAVAILABLE answer."""
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    for detail in status_pb2.Status.FromString(raw).details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(retry.DESCRIPTOR):
            detail.Unpack(retry)
    return info.reason, retry.retry_delay.ToTimedelta().total_seconds()


def quota(error: grpc.aio.AioRpcError) -> tuple[list[str], timedelta]:
    """The QuotaFailure subjects and the RetryInfo delay of a RESOURCE_EXHAUSTED answer."""
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    failure, retry = error_details_pb2.QuotaFailure(), error_details_pb2.RetryInfo()
    first, second = status_pb2.Status.FromString(raw).details
    assert first.Unpack(failure)
    assert second.Unpack(retry)
    return [violation.subject for violation in failure.violations], retry.retry_delay.ToTimedelta()


def precondition(error: grpc.aio.AioRpcError) -> str:
    """The type of the google.rpc.PreconditionFailure a FAILED_PRECONDITION error carries."""
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    failure = error_details_pb2.PreconditionFailure()
    assert status_pb2.Status.FromString(raw).details[0].Unpack(failure)
    kind: str = failure.violations[0].type
    return kind


async def snapshot(client: aioredis.Redis) -> dict[bytes, object]:
    """Every key and its serialised value: equal snapshots mean nothing was written. The SMS outboxes are
    read by their entries, and left out when they have none: their consumer group, created by the first
    dispatcher's read, notes each dispatcher's every read (docs/decisions/0025). The shard count is left out:
    a health round records it again after a test emptied Redis (decision 0058)."""
    outboxes = {outbox.encode() for outbox in Keyspace().outboxes()}
    taken: dict[bytes, object] = {}
    for key in await keys_written(client):
        if key not in outboxes:
            taken[key] = await client.dump(key)
        elif entries := await client.xrange(key):
            taken[key] = entries
    return taken


async def counted(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    """The sample once it appears (within 2 s), else None.

    The status reaches the client as the handler answers or aborts; the metering interceptor counts the call a
    moment later, so a test that reads the count right after the answer polls for it.
    """
    for _ in range(100):
        value = registry.get_sample_value(name, labels)
        if value is not None:
            return value
        await asyncio.sleep(0.02)
    return registry.get_sample_value(name, labels)


@contextlib.asynccontextmanager
async def out_of_memory(admin: aioredis.Redis) -> AsyncIterator[None]:
    """maxmemory far below what is used, nothing evictable: every command that may grow memory is -OOM."""
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)
    try:
        yield
    finally:
        await admin.config_set("maxmemory", 0)


async def keys_written(redis_client: aioredis.Redis) -> list[bytes]:
    """Every key in Redis but the shard count, which a health round records again after a test emptied
    Redis (decision 0058)."""
    layout = Keyspace().layout().encode()
    return sorted(key for key in await redis_client.keys() if key != layout)

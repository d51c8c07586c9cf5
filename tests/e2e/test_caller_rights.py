"""The recommended caller policy over mTLS: who may call what, and what online banking cannot do.

The server runs with docs/examples/caller-policy.toml, the very file docs/operations.md shows, so that the
documentation and what these tests hold cannot drift apart.
"""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import sesame.api.v1
from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.config import Settings
from sesame.server.domain.privacy import mask_phone
from sesame.server.grpc.demo import read_code
from tests.e2e.helpers import CONTEXT, PHONE, precondition, snapshot, transfer, violations, wrong
from tests.support.pki import BACKOFFICE, ONLINE, PAYMENTS, STRANGER, Identity, Pki
from tests.support.wired_server import ServerOptions, Wired, start_wired

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EXAMPLE_POLICY = Path(__file__).parents[2] / "docs" / "examples" / "caller-policy.toml"
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
CHANGE = "sesame.api.v1.EnrollmentService/ChangeSecurePhone"
OVERRIDE = "sesame.api.v1.EnrollmentService/OverrideSecurePhone"
ATTACKER_PHONE = "+33698765432"  # online banking's own phone, where it would like the codes to go
NEVER_ISSUED = f"{'0' * 32}.k1.d6.u{'0' * 16}"  # a well-formed challenge id no server issued
WHO = {"request_id": "r-1", "actor": "ops-42"}


def _services() -> Iterator[ServiceDescriptor]:
    """Every service of our API's generated modules, and the two standard ones the server answers."""
    for module in pkgutil.iter_modules(sesame.api.v1.__path__):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(f"sesame.api.v1.{module.name}").DESCRIPTOR
            yield from descriptor.services_by_name.values()
    yield reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
    yield HEALTH


RPCS: tuple[MethodDescriptor, ...] = tuple(m for service in _services() for m in service.methods)


def _full_name(method: MethodDescriptor) -> str:
    return f"{method.containing_service.full_name}/{method.name}"


def _policy() -> dict[str, list[str]]:
    """The example policy as written: identity -> rules (read with tomllib, not with the server's code)."""
    document = tomllib.loads(EXAMPLE_POLICY.read_text(encoding="utf-8"))
    return {identity: entry["allow"] for identity, entry in document["callers"].items()}


def _granted(rules: list[str], method: MethodDescriptor) -> bool:
    """Whether `rules` name the method or its whole service; health needs no grant."""
    service = method.containing_service.full_name
    return service == HEALTH.full_name or _full_name(method) in rules or f"{service}/*" in rules


@dataclass
class Bank:
    """A running server with mTLS and the example policy, and what the tests look at behind it."""

    wired: Wired
    pki: Pki
    sms_file: Path
    store: RedisState

    def identity(self, name: str) -> Identity:
        return {
            PAYMENTS: self.pki.payments,
            ONLINE: self.pki.online,
            BACKOFFICE: self.pki.backoffice,
            STRANGER: self.pki.stranger,
        }[name]

    def channel(self, name: str) -> grpc.aio.Channel:
        """A channel presenting the certificate of the identity `name` and trusting the test CA."""
        address = f"127.0.0.1:{self.wired.server.port}"
        return grpc.aio.secure_channel(address, self.identity(name).credentials(self.pki.ca))


@pytest.fixture
async def bank(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, pki: Pki
) -> AsyncIterator[Bank]:
    """The composition root's wiring behind mTLS and docs/examples/caller-policy.toml, read as settings."""
    settings = Settings.from_env({**pki.env, "SESAME_AUTHZ_POLICY_FILE": str(EXAMPLE_POLICY)})
    sms_file = tmp_path / "sms.jsonl"
    wired = await start_wired(keystore, redis_store, sms_file, ServerOptions(transport=settings.transport))
    try:
        yield Bank(wired, pki, sms_file, redis_store)
    finally:
        await wired.server.stop(0)


async def _requests(request: Any) -> AsyncIterator[Any]:
    yield request


async def _answer(channel: grpc.aio.Channel, method: MethodDescriptor) -> grpc.aio.AioRpcError | None:
    """Call `method` with an empty request (its first answer for a stream); the error, None for OK."""
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    path = f"/{_full_name(method)}"
    codec: dict[str, Any] = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": response_class.FromString,
    }
    try:
        if method.client_streaming:
            streamed = channel.stream_stream(path, **codec)(_requests(request_class()), timeout=5)
            await streamed.read()
            streamed.cancel()
        elif method.server_streaming:
            watched = channel.unary_stream(path, **codec)(request_class(), timeout=5)
            await watched.read()
            watched.cancel()
        else:
            await channel.unary_unary(path, **codec)(request_class(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error
    return None


def _refusal(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    assert status_pb2.Status.FromString(raw).details[0].Unpack(info)
    return info


def test_the_example_policy_keeps_the_override_and_the_unblock_to_the_back_office() -> None:
    """Online banking changes numbers only with a code on the old one; only the back office overrides."""
    policy = _policy()
    assert set(policy) == {PAYMENTS, ONLINE, BACKOFFICE}
    by_name = {_full_name(method): method for method in RPCS}
    holders = {
        rpc: {who for who, rules in policy.items() if _granted(rules, by_name[rpc])}
        for rpc in (CHANGE, OVERRIDE, "sesame.api.v1.EnrollmentService/UnblockUser")
    }
    assert holders == {
        CHANGE: {ONLINE},
        OVERRIDE: {BACKOFFICE},
        "sesame.api.v1.EnrollmentService/UnblockUser": {BACKOFFICE},
    }


async def test_every_identity_may_call_exactly_what_the_example_policy_grants(
    bank: Bank, redis_client: aioredis.Redis
) -> None:
    """Each identity x each RPC of each service: allowed, or PERMISSION_DENIED naming method and caller."""
    assert {_full_name(m) for m in RPCS} >= {CHANGE, OVERRIDE}
    policy = _policy()
    before = await snapshot(redis_client)
    wrong_answers = []
    for identity in (*policy, STRANGER):
        rules = policy.get(identity, [])
        async with bank.channel(identity) as channel:
            for method in RPCS:
                error = await _answer(channel, method)
                denied = error is not None and error.code() is grpc.StatusCode.PERMISSION_DENIED
                if denied != (not _granted(rules, method)):
                    wrong_answers.append((identity, _full_name(method), error and error.code()))
                elif denied and error is not None:
                    info = _refusal(error)
                    assert (info.reason, dict(info.metadata)) == (
                        "CALLER_NOT_ALLOWED",
                        {"method": _full_name(method), "caller": identity},
                    )
    assert wrong_answers == []
    assert await snapshot(redis_client) == before  # empty requests: refused or invalid, nothing written


def _field(number: int, value: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2) of fewer than 128 bytes."""
    assert len(value) < 128
    return bytes([number << 3 | 2, len(value)]) + value


def _with_old_override(request: enrol_pb.ChangeSecurePhoneRequest) -> bytes:
    """The request with field 4 as clients built before the split sent it: {operator, reason}."""
    override = _field(1, b"agent-7") + _field(2, "identité vérifiée en agence".encode())
    return request.SerializeToString() + _field(4, override)


async def _change_raw(channel: grpc.aio.Channel, raw: bytes) -> enrol_pb.ChangeSecurePhoneResponse:
    call = channel.unary_unary(
        f"/{CHANGE}",
        request_serializer=lambda body: body,
        response_deserializer=enrol_pb.ChangeSecurePhoneResponse.FromString,
    )
    response: enrol_pb.ChangeSecurePhoneResponse = await call(raw, timeout=5)
    return response


async def _enrol(bank: Bank, user_id: str, phone: str = PHONE) -> None:
    async with bank.channel(BACKOFFICE) as channel:
        await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=phone), timeout=5
        )


async def _verified_change_phone(bank: Bank, user_id: str, new_phone: str) -> str:
    """A change_phone challenge of `user_id` for `new_phone`, verified with the code sent to its number."""
    operation = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone=new_phone))
    async with bank.channel(ONLINE) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = await auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=operation, context=CONTEXT), timeout=5
        )
        _, code = await read_code(bank.sms_file, started.challenge_id)
        verified = await auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=started.challenge_id, code=code, operation=operation, context=CONTEXT
            ),
            timeout=5,
        )
    assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED
    return started.challenge_id


async def test_online_banking_cannot_move_a_users_number_to_its_own_phone(bank: Bank) -> None:
    """No request of online banking moves alice's number: no override, no borrowed or unverified challenge."""
    policy = _policy()
    by_name = {_full_name(method): method for method in RPCS}
    attackers = [
        who
        for who, rules in policy.items()
        if _granted(rules, by_name[CHANGE]) and not _granted(rules, by_name[OVERRIDE])
    ]
    assert attackers == [ONLINE]
    await _enrol(bank, "alice")
    await _enrol(bank, "mallory", "+33612000001")  # online banking's own customer account
    borrowed = await _verified_change_phone(bank, "mallory", ATTACKER_PHONE)
    change = {"user_id": "alice", "new_phone": ATTACKER_PHONE, **WHO}
    async with bank.channel(ONLINE) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await enrol.OverrideSecurePhone(
                enrol_pb.OverrideSecurePhoneRequest(**change, operator="agent-7", reason="lost"), timeout=5
            )
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as unproven:  # the override of old, without a challenge
            await _change_raw(channel, _with_old_override(enrol_pb.ChangeSecurePhoneRequest(**change)))
        assert set(violations(unproven.value)) == {"verified_challenge_id"}
        unverified = await _unverified_change_phone(channel, "alice", ATTACKER_PHONE)
        for challenge_id, answer in (
            (NEVER_ISSUED, "CHALLENGE_MISMATCH"),
            (borrowed, "CHALLENGE_MISMATCH"),  # mallory's verified code, for the same new number
            (unverified, "CHALLENGE_NOT_VERIFIED"),  # alice's code went to alice's phone
        ):
            request = enrol_pb.ChangeSecurePhoneRequest(**change, verified_challenge_id=challenge_id)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _change_raw(channel, _with_old_override(request))
            assert precondition(refused.value) == answer
    async with bank.channel(BACKOFFICE) as channel:
        alice = await enrol_grpc.EnrollmentServiceStub(channel).GetUser(
            enrol_pb.GetUserRequest(user_id="alice"), timeout=5
        )
    assert (alice.user.masked_phone, alice.user.HasField("phone_changed_at")) == (mask_phone(PHONE), False)


async def _unverified_change_phone(channel: grpc.aio.Channel, user_id: str, new_phone: str) -> str:
    operation = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone=new_phone))
    started = await auth_grpc.AuthenticationServiceStub(channel).StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=operation, context=CONTEXT), timeout=5
    )
    return started.challenge_id


def _whole_answer(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str | None, status_pb2.Status]:
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    return error.code(), error.details(), status_pb2.Status.FromString(raw)


async def test_a_number_change_tells_nothing_of_who_is_enrolled(bank: Bank) -> None:
    """Unknown user, active, suspended or revoked user with a bad challenge: one and the same answer."""
    for user_id in ("alice", "bob", "carol", "dave"):
        await _enrol(bank, user_id)
    bobs = await _verified_change_phone(bank, "bob", ATTACKER_PHONE)
    async with bank.channel(BACKOFFICE) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        await enrol.SuspendUser(enrol_pb.SuspendUserRequest(user_id="carol", **WHO), timeout=5)
        await enrol.RevokeUser(enrol_pb.RevokeUserRequest(user_id="dave", **WHO), timeout=5)
    async with bank.channel(ONLINE) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        for challenge_id in (NEVER_ISSUED, bobs):
            answers = []
            for user_id in ("nobody", "alice", "carol", "dave"):
                request = enrol_pb.ChangeSecurePhoneRequest(
                    user_id=user_id, new_phone=ATTACKER_PHONE, verified_challenge_id=challenge_id, **WHO
                )
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await enrol.ChangeSecurePhone(request, timeout=5)
                answers.append(_whole_answer(refused.value))
            assert precondition(refused.value) == "CHALLENGE_MISMATCH"
            assert all(answer == answers[0] for answer in answers), answers


async def _blocked(bank: Bank, user_id: str) -> None:
    """Five wrong codes in a row over two challenges (three attempts each): the user is blocked."""
    async with bank.channel(PAYMENTS) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        for attempts in (3, 2):
            started = await auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT),
                timeout=5,
            )
            _, code = await read_code(bank.sms_file, started.challenge_id)
            for _ in range(attempts):
                await auth.VerifyChallenge(
                    auth_pb.VerifyChallengeRequest(
                        challenge_id=started.challenge_id,
                        code=wrong(code),
                        operation=transfer(),
                        context=CONTEXT,
                    ),
                    timeout=5,
                )


async def _start(bank: Bank, user_id: str) -> auth_pb.StartChallengeResponse:
    async with bank.channel(PAYMENTS) as channel:
        response: auth_pb.StartChallengeResponse = await auth_grpc.AuthenticationServiceStub(
            channel
        ).StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT), timeout=5
        )
    return response


async def test_the_back_office_unblocks_a_user_blocked_after_five_wrong_codes(bank: Bank) -> None:
    """Blocked, no code is sent; only the back office's UnblockUser lifts it, journaled; then codes flow."""
    await _enrol(bank, "alice")
    await _blocked(bank, "alice")
    with pytest.raises(grpc.aio.AioRpcError) as blocked:
        await _start(bank, "alice")
    assert precondition(blocked.value) == "USER_BLOCKED"
    unblock = enrol_pb.UnblockUserRequest(
        user_id="alice", request_id="ub-1", actor="agent-7", reason="called the user back"
    )
    for who in (PAYMENTS, ONLINE, STRANGER):
        async with bank.channel(who) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await enrol_grpc.EnrollmentServiceStub(channel).UnblockUser(unblock, timeout=5)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED, who
    async with bank.channel(BACKOFFICE) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        unblocked = await enrol.UnblockUser(unblock, timeout=5)
        retried = await enrol.UnblockUser(unblock, timeout=5)
    assert (unblocked.unblocked, unblocked.user.HasField("blocked_until")) == (True, False)
    assert retried.unblocked is False
    started = await _start(bank, "alice")
    assert started.challenge_id
    (entry,) = [e for e in await bank.store.users.user_journal("alice") if e["event"] == "user.unblock"]
    assert (entry["outcome"], entry["actor"], entry["reason"], entry["caller"]) == (
        "unblocked",
        "agent-7",
        "called the user back",
        BACKOFFICE,
    )


async def test_unblocking_an_unknown_user_is_not_found(bank: Bank) -> None:
    """The back office learns that the user does not exist: NOT_FOUND."""
    async with bank.channel(BACKOFFICE) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await enrol_grpc.EnrollmentServiceStub(channel).UnblockUser(
                enrol_pb.UnblockUserRequest(user_id="nobody", reason="checked", **WHO), timeout=5
            )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND

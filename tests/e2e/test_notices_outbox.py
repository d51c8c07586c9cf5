"""Notices through the outbox (docs/decisions/0033): the VERIFIED add_beneficiary queues its notice in the
step that verifies, before the call returns; the server that made the change SIGKILLed right after, with no
dispatcher running, loses nothing: a `sesame dispatch` started later sends it once and journals it as a user
notice. Through real processes, Redis, SoftHSM and the console gateway's file."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from tests.e2e.helpers import IBAN, PHONE
from tests.support.console_sms import written
from tests.support.outbox import keys_holding, sms_in
from tests.support.serve_process import ServeProcess, start_dispatch, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ADD = op_pb.Operation(add_beneficiary=op_pb.AddBeneficiary(payee=op_pb.Payee(name="Jean DUPONT", iban=IBAN)))
WITHIN = 30.0
NEW_PHONE = "+33698765432"


def _notices(sms_file: Path) -> list[dict[str, str]]:
    """The SMS that belong to no challenge (notices) in the console file."""
    return [message for message in written(sms_file) if not message["challenge_id"]]


def _killed(process: ServeProcess) -> None:
    process.process.send_signal(signal.SIGKILL)
    process.process.wait(timeout=30)


async def test_a_notice_queued_by_the_verification_survives_the_servers_death(
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    redis_client: aioredis.Redis,
    redis_store: RedisState,
    stopped: list[ServeProcess],
) -> None:
    """Verified, then the server SIGKILLed with no dispatcher running: the notice waits in the outbox, and
    a dispatcher started afterwards sends it once and journals it (sent, the number masked)."""
    var = tmp_path / "var"
    chosen = {"SESAME_REDIS_URL": redis_server.url, "SESAME_DISPATCHERS": "0"}
    serving = start_serve(var, settings=chosen)
    stopped.append(serving)
    sms_file = var / "sms.jsonl"
    async with grpc.aio.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        await enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=PHONE)
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = await auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="alice", operation=ADD))
        code_sender = start_dispatch(var, chosen)  # sends the code SMS, then dies
        stopped.append(code_sender)
        _, code = await asyncio.to_thread(sms_in, sms_file, started.challenge_id, WITHIN)
        await _until(lambda: _outbox_empty(redis_client))
        _killed(code_sender)
        request = auth_pb.VerifyChallengeRequest(challenge_id=started.challenge_id, code=code, operation=ADD)
        verified = await auth.VerifyChallenge(request)
    assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED
    # Queued before the call returned, by the step that verified: nothing sent, nothing journaled yet.
    entries = await redis_client.xrange(Keyspace().outbox_of(started.challenge_id))
    assert [(f[b"challenge_id"].decode(), f[b"notice"]) for _, f in entries] == [
        (started.challenge_id, b"beneficiary_added")
    ]
    assert _notices(sms_file) == []
    _killed(serving)
    sender = start_dispatch(var, chosen)
    stopped.append(sender)
    await _until(lambda: _outbox_empty(redis_client))
    (notice,) = _notices(sms_file)
    assert notice["to"] == PHONE
    assert '"Jean DUPONT" (IBAN FR76...0189) a été ajouté le ' in notice["text"]
    assert code not in notice["text"]
    journal = await redis_store.users.user_journal("alice")
    notices = [(e["kind"], e["outcome"], e["phone"]) for e in journal if e["event"] == "user.notice"]
    assert notices == [("beneficiary_added", "sent", "+33*******78")]


async def _outbox_empty(client: aioredis.Redis) -> bool:
    return sum([await client.xlen(outbox) for outbox in Keyspace().outboxes()]) == 0


async def _until(condition: Callable[[], Awaitable[bool]], within: float = WITHIN) -> None:
    """Wait until `condition` answers True; TimeoutError after `within` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def test_the_phone_changed_notice_queued_by_the_change_survives_the_servers_death(
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    redis_client: aioredis.Redis,
    redis_store: RedisState,
    stopped: list[ServeProcess],
) -> None:
    """ChangeSecurePhone by a verified challenge answers `old_phone_notified` (queued), the server is
    SIGKILLed with no dispatcher running: the notice waits in the outbox, and a dispatcher started
    afterwards sends it once to the old number and journals it, sealed, with its text's hash and template
    (decision 0041)."""
    var = tmp_path / "var"
    chosen = {"SESAME_REDIS_URL": redis_server.url, "SESAME_DISPATCHERS": "0"}
    serving = start_serve(var, settings=chosen)
    stopped.append(serving)
    sms_file = var / "sms.jsonl"
    change = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone=NEW_PHONE))
    async with grpc.aio.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        await enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=PHONE)
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = await auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="alice", operation=change))
        code_sender = start_dispatch(var, chosen)  # sends the code SMS, then dies
        stopped.append(code_sender)
        _, code = await asyncio.to_thread(sms_in, sms_file, started.challenge_id, WITHIN)
        await _until(lambda: _outbox_empty(redis_client))
        _killed(code_sender)
        request = auth_pb.VerifyChallengeRequest(
            challenge_id=started.challenge_id, code=code, operation=change
        )
        assert (await auth.VerifyChallenge(request)).result == auth_pb.VERIFY_RESULT_VERIFIED
        changed = await enrol.ChangeSecurePhone(
            enrol_pb.ChangeSecurePhoneRequest(
                user_id="alice",
                new_phone=NEW_PHONE,
                request_id="p-1",
                actor="online-banking",
                verified_challenge_id=started.challenge_id,
            )
        )
    assert changed.old_phone_notified  # queued, in the change's own step
    entries = await redis_client.xrange(Keyspace().user_outbox("alice"))
    assert [(f[b"challenge_id"].decode(), f[b"notice"]) for _, f in entries] == [
        (started.challenge_id, b"phone_changed")
    ]
    assert _notices(sms_file) == []
    _killed(serving)
    sender = start_dispatch(var, chosen)
    stopped.append(sender)
    await _until(lambda: _outbox_empty(redis_client))
    (notice,) = _notices(sms_file)
    assert notice["to"] == PHONE  # the old number
    assert "numéro sécurisé a été changé pour le +33*******32" in notice["text"]
    journal = await redis_store.users.user_journal("alice")
    (sent,) = [e for e in journal if e["event"] == "user.notice"]
    assert (sent["kind"], sent["outcome"], sent["phone"]) == ("phone_changed", "sent", "+33*******78")
    assert (sent["template"], sent["text_sha256"]) == (
        "fr/phone_changed",
        hashlib.sha256(notice["text"].encode()).hexdigest(),
    )


async def test_the_phone_changed_notice_queued_by_an_override_survives_the_servers_death(
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    redis_client: aioredis.Redis,
    redis_store: RedisState,
    stopped: list[ServeProcess],
) -> None:
    """OverrideSecurePhone (no challenge) answers `old_phone_notified` (queued in its step, the old number
    kept beside the user, not in the outbox entry); the server is SIGKILLed with no dispatcher running, and
    a dispatcher started afterwards sends the notice once to the old number, journals it with its text's
    hash and template, and deletes what it kept: nothing in Redis holds the old number any more (0041)."""
    var = tmp_path / "var"
    chosen = {"SESAME_REDIS_URL": redis_server.url, "SESAME_DISPATCHERS": "0"}
    serving = start_serve(var, settings=chosen)
    stopped.append(serving)
    sms_file = var / "sms.jsonl"
    async with grpc.aio.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        await enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=PHONE)
        )
        overridden = await enrol.OverrideSecurePhone(
            enrol_pb.OverrideSecurePhoneRequest(
                user_id="alice",
                new_phone=NEW_PHONE,
                operator="ops-1",
                reason="lost phone, identity checked",
                request_id="o-1",
                actor="ops-1",
            )
        )
    assert overridden.old_phone_notified  # queued, in the override's own step
    entries = await redis_client.xrange(Keyspace().user_outbox("alice"))
    assert [(f[b"challenge_id"], f[b"user_id"], f[b"notice"]) for _, f in entries] == [
        (b"", b"alice", b"phone_changed")
    ]
    assert not any(PHONE[1:].encode() in value for _, f in entries for value in f.values())
    (kept,) = await keys_holding(redis_client, PHONE)  # the notice's addressee, and nothing else
    assert b":notice:alice:" in kept
    assert 0 < await redis_client.pttl(kept) <= 7 * 86_400_000  # the longest notice age at most
    assert not sms_file.exists() or _notices(sms_file) == []
    _killed(serving)
    sender = start_dispatch(var, chosen)
    stopped.append(sender)
    await _until(lambda: _outbox_empty(redis_client))
    (notice,) = _notices(sms_file)
    assert notice["to"] == PHONE  # the old number
    assert "numéro sécurisé a été changé pour le +33*******32" in notice["text"]
    journal = await redis_store.users.user_journal("alice")
    (sent,) = [e for e in journal if e["event"] == "user.notice"]
    assert (sent["kind"], sent["outcome"], sent["phone"]) == ("phone_changed", "sent", "+33*******78")
    assert (sent["template"], sent["text_sha256"]) == (
        "fr/phone_changed",
        hashlib.sha256(notice["text"].encode()).hexdigest(),
    )
    assert await keys_holding(redis_client, PHONE) == []

"""Notices get the codes' delivery policy (issue 7, decision 0041): through `sesame serve`, its dispatcher,
the smpp34 SMSC simulator and the console provider. The SMSC takes the code SMS, then refuses the number:
with a second provider the beneficiary-added notice goes through it; with none it is dead-lettered,
journaled failed with the reason and listed by `sesame sms dead-letters`, the challenge's delivery intact."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
import smpp34

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from tests.e2e.helpers import IBAN, PHONE
from tests.e2e.test_sms_dead_letters import dead_letters_command
from tests.support.console_sms import written
from tests.support.outbox import keys_holding
from tests.support.serve_process import ServeProcess, start_serve
from tests.support.smsc import Smsc, serving_in_thread

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ADD = op_pb.Operation(add_beneficiary=op_pb.AddBeneficiary(payee=op_pb.Payee(name="Jean DUPONT", iban=IBAN)))
WITHIN = 20.0


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The simulator, taking every submit_sm until the test tells it to refuse."""
    with serving_in_thread(Smsc()) as running:
        yield running


def _serve(var: Path, smsc: Smsc, redis_url: str, providers: str) -> ServeProcess:
    settings = {
        "SESAME_REDIS_URL": redis_url,
        "SESAME_SMS_PROVIDERS": providers,
        "SESAME_SMPP_HOST": "127.0.0.1",
        "SESAME_SMPP_PORT": str(smsc.port),
        "SESAME_SMPP_SYSTEM_ID": "sesame",
        "SESAME_SMPP_PASSWORD": "s3cr3t!x",
        "SESAME_SMPP_CONNECT_TIMEOUT_SECONDS": "2",
    }
    return start_serve(var, settings=settings)


async def _beneficiary_added(address: str, smsc: Smsc, user_id: str) -> str:
    """Enrol, start an add_beneficiary whose code the SMSC takes, verify it: the notice is queued."""
    async with grpc.aio.insecure_channel(address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        await enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=PHONE)
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = await auth.StartChallenge(auth_pb.StartChallengeRequest(user_id=user_id, operation=ADD))
        described = auth_pb.GetChallengeRequest(challenge_id=started.challenge_id)
        deadline = time.monotonic() + WITHIN
        while (await auth.GetChallenge(described)).challenge.delivery_state == auth_pb.DELIVERY_STATE_QUEUED:
            assert time.monotonic() < deadline, "the code SMS was not sent"
            await asyncio.sleep(0.05)
        found = re.search(r"code (\d{6,8})", smsc.text())
        assert found is not None
        # Every part of the code taken: from now on the SMSC refuses the number (its final word).
        smsc.accept_first = len(smsc.submitted)
        smsc.refuse_with = smpp34.ESME_RINVDSTADR
        request = auth_pb.VerifyChallengeRequest(
            challenge_id=started.challenge_id, code=found.group(1), operation=ADD
        )
        assert (await auth.VerifyChallenge(request)).result == auth_pb.VERIFY_RESULT_VERIFIED
    return started.challenge_id


async def _notice_entry(store: RedisState, user_id: str, outcome: str) -> dict[str, str]:
    """The user's `user.notice` entry with `outcome`, once the dispatcher wrote it."""
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        journal = await store.users.user_journal(user_id)
        found = [e for e in journal if e["event"] == "user.notice" and e["outcome"] == outcome]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {outcome} user.notice for {user_id}")


async def test_a_notice_the_first_provider_refuses_goes_through_the_second(
    tmp_path: Path,
    smsc: Smsc,
    redis_server: EmbeddedRedis,
    redis_store: RedisState,
    stopped: list[ServeProcess],
) -> None:
    """SMPP refuses the number, the console provider takes the notice: sent once, journaled sent under the
    console's reference, never dead-lettered."""
    var = tmp_path / "var"
    stopped.append(serving := _serve(var, smsc, redis_server.url, "smpp,console"))
    await _beneficiary_added(serving.address, smsc, "nina")
    entry = await _notice_entry(redis_store, "nina", "sent")
    assert (entry["kind"], entry["provider_ref"].split("-")[0]) == ("beneficiary_added", "console")
    (notice,) = [message for message in written(var / "sms.jsonl") if not message["challenge_id"]]
    assert (notice["to"], "a été ajouté" in notice["text"]) == (PHONE, True)
    assert smsc.accept_first == len(smsc.submitted)  # the code only: the SMSC refused the notice
    lines = await asyncio.to_thread(dead_letters_command, {"SESAME_REDIS_URL": redis_server.url})
    assert lines[1:] == []


async def test_a_notice_no_provider_takes_is_dead_lettered(
    tmp_path: Path,
    smsc: Smsc,
    redis_server: EmbeddedRedis,
    redis_store: RedisState,
    stopped: list[ServeProcess],
) -> None:
    """SMPP alone refuses the number (its final word): the notice is dead-lettered at once, journaled failed
    with the reason and its text's record, listed masked with its kind; the code's delivery is untouched."""
    stopped.append(serving := _serve(tmp_path / "var", smsc, redis_server.url, "smpp"))
    challenge_id = await _beneficiary_added(serving.address, smsc, "omar")
    entry = await _notice_entry(redis_store, "omar", "failed")
    assert (entry["kind"], entry["reason"], entry["failure"], entry["challenge_id"]) == (
        "beneficiary_added",
        "bad_number",
        "bad_number",
        challenge_id,
    )
    assert entry["template"] == "fr/beneficiary_added"
    lines = await asyncio.to_thread(dead_letters_command, {"SESAME_REDIS_URL": redis_server.url})
    mine = [line.split("\t") for line in lines[1:] if challenge_id in line]
    assert [fields[1:7] + fields[-1:] for fields in mine] == [
        [challenge_id, "omar", "+33*******78", "failed", "bad_number", "bad_number", "beneficiary_added"]
    ]
    challenge = await redis_store.challenges.get_challenge(challenge_id)
    assert challenge.delivery_reason == ""  # the code's own delivery: the notice's failure is not its


async def test_an_override_notice_no_provider_takes_is_dead_lettered_and_its_old_number_dropped(  # noqa: PLR0913, PLR0917 (its fixtures)
    tmp_path: Path,
    smsc: Smsc,
    redis_server: EmbeddedRedis,
    redis_client: aioredis.Redis,
    redis_store: RedisState,
    stopped: list[ServeProcess],
) -> None:
    """OverrideSecurePhone queues its notice (decision 0041); SMPP alone refuses the number: the notice is
    dead-lettered, journaled failed with its text's record, listed masked with its kind, and the old number
    its step kept for the dispatcher is deleted in the same step: no key in Redis holds it any more."""
    smsc.accept_first, smsc.refuse_with = 0, smpp34.ESME_RINVDSTADR
    stopped.append(serving := _serve(tmp_path / "var", smsc, redis_server.url, "smpp"))
    async with grpc.aio.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        enrolment = enrol_pb.EnrollUserRequest(user_id="pia", client_id="acme", secure_phone=PHONE)
        await enrol.EnrollUser(enrolment)
        overridden = await enrol.OverrideSecurePhone(
            enrol_pb.OverrideSecurePhoneRequest(
                user_id="pia",
                new_phone="+33698765432",
                operator="ops-1",
                reason="lost phone, identity checked",
                request_id="o-1",
                actor="ops-1",
            )
        )
    assert overridden.old_phone_notified  # queued: whether it left is the journal's
    entry = await _notice_entry(redis_store, "pia", "failed")
    assert (entry["kind"], entry["reason"], entry["phone"], entry["template"]) == (
        "phone_changed",
        "bad_number",
        "+33*******78",
        "fr/phone_changed",
    )
    lines = await asyncio.to_thread(dead_letters_command, {"SESAME_REDIS_URL": redis_server.url})
    mine = [line.split("\t") for line in lines[1:] if "\tpia\t" in line]
    assert [fields[1:7] + fields[-1:] for fields in mine] == [
        ["-", "pia", "+33*******78", "failed", "bad_number", "bad_number", "phone_changed"]
    ]
    assert await keys_holding(redis_client, PHONE) == []

"""`sesame serve` with the SMPP provider: the SMS leaves over SMPP, its receipt comes back on the session."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients import smpp_text
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.server.domain.privacy import mask_challenge
from tests.support.console_sms import written
from tests.support.outbox import dispatched_state
from tests.support.ports import free_port
from tests.support.serve_process import ServeProcess, start_serve
from tests.support.smsc import Smsc, serving_in_thread

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345678"


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The smpp34 SMSC simulator on a free loopback port, answering from its own thread."""
    with serving_in_thread(Smsc()) as running:
        yield running


def _serve(var: Path, smpp_port: int, providers: str, **more: str) -> Iterator[ServeProcess]:
    settings = more | {
        "SESAME_SMS_PROVIDERS": providers,
        "SESAME_SMPP_HOST": "127.0.0.1",
        "SESAME_SMPP_PORT": str(smpp_port),
        "SESAME_SMPP_SYSTEM_ID": "sesame",
        "SESAME_SMPP_PASSWORD": "s3cr3t!x",
        "SESAME_SMPP_CONNECT_TIMEOUT_SECONDS": "2",
    }
    serving = start_serve(var, settings=settings)
    yield serving
    serving.process.terminate()
    serving.process.wait(timeout=30)
    assert serving.process.returncode == 0, serving.output()
    assert "s3cr3t!x" not in serving.output()


@pytest.fixture
def through_smpp(smsc: Smsc, tmp_path: Path) -> Iterator[ServeProcess]:
    """A `sesame serve` whose only provider is the test's SMSC."""
    yield from _serve(tmp_path / "var", smsc.port, "smpp")


@pytest.fixture
def through_smpp_on_test_redis(
    smsc: Smsc, redis_server: EmbeddedRedis, redis_store: RedisState, tmp_path: Path
) -> Iterator[ServeProcess]:
    """The same on the test's Redis (emptied first by `redis_store`), whose journal the test reads."""
    yield from _serve(tmp_path / "var", smsc.port, "smpp", SESAME_REDIS_URL=redis_server.url)


@pytest.fixture
def smsc_down_then_console(tmp_path: Path) -> Iterator[ServeProcess]:
    """A `sesame serve` with `smpp,console`, and nothing listening on the SMSC's port."""
    yield from _serve(tmp_path / "var", free_port(), "smpp,console")


def _transfer(payee: str) -> op_pb.Operation:
    return op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=125000),
            payee=op_pb.Payee(name=payee, iban="FR7630006000011234567890189"),
            transaction_id="tx-1",
        )
    )


SENT_OR_DELIVERED = {auth_pb.DELIVERY_STATE_SENT, auth_pb.DELIVERY_STATE_DELIVERED}  # a receipt may be first


def _start(address: str, payee: str) -> auth_pb.StartChallengeResponse:
    with grpc.insecure_channel(address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone=PHONE), timeout=5
        )
        request = auth_pb.StartChallengeRequest(user_id="ana", operation=_transfer(payee))
        started: auth_pb.StartChallengeResponse = auth_grpc.AuthenticationServiceStub(channel).StartChallenge(
            request, timeout=10
        )
        return started


def _delivery_state(address: str, challenge_id: str, wanted: int, limit: float = 10.0) -> int:
    """The challenge's delivery state once it is `wanted`, or as it is after `limit` seconds."""
    deadline = time.monotonic() + limit
    with grpc.insecure_channel(address) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        while True:
            request = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
            state: int = auth.GetChallenge(request, timeout=5).challenge.delivery_state
            if state == wanted or time.monotonic() > deadline:
                return state
            time.sleep(0.1)


def test_a_challenge_is_sent_over_smpp_then_reported_delivered(smsc: Smsc, through_smpp: ServeProcess):
    """StartChallenge answers QUEUED, then the SMS is sent: the SMSC got the text in GSM-7, 2 parts (François
    printed Francois, the budget of docs/sms.md); its DELIVRD receipt makes it DELIVERED."""
    # Letters only: the SMS text reduces the payee name to what it prints (digits would be cut).
    marker = "".join(chr(ord("a") + b % 26) for b in secrets.token_bytes(8))
    started = _start(through_smpp.address, f"François Durand {marker}")
    assert started.delivery_state == auth_pb.DELIVERY_STATE_QUEUED
    assert dispatched_state(through_smpp.address, started.challenge_id) in SENT_OR_DELIVERED
    assert f'"Francois Durand {marker}"' in smsc.text()
    assert [part.data_coding for part in smsc.submitted] == [smpp_text.GSM7] * 2
    assert {(part.destination, part.source) for part in smsc.submitted} == {("33612345678", "MaBanque")}
    state = _delivery_state(through_smpp.address, started.challenge_id, auth_pb.DELIVERY_STATE_DELIVERED)
    assert state == auth_pb.DELIVERY_STATE_DELIVERED
    code = re.search(r"code (\d{6,8})", smsc.text())
    assert code is not None
    assert code.group(1) not in through_smpp.output()


def test_an_undelivered_receipt_makes_the_challenge_failed(smsc: Smsc, through_smpp: ServeProcess):
    """A receipt stat:UNDELIV reaches the challenge as FAILED through the real store."""
    smsc.receipt = "UNDELIV"
    started = _start(through_smpp.address, "Zoé Martin")
    state = _delivery_state(through_smpp.address, started.challenge_id, auth_pb.DELIVERY_STATE_FAILED)
    assert state == auth_pb.DELIVERY_STATE_FAILED


def test_with_the_smsc_down_the_next_provider_gets_the_sms(
    smsc_down_then_console: ServeProcess, tmp_path: Path
):
    """`smpp,console` with no SMSC listening: the console gets the SMS and the challenge is SENT."""
    payee = "Zoé Martin " + "".join(chr(ord("a") + b % 26) for b in secrets.token_bytes(8))
    started = _start(smsc_down_then_console.address, payee)
    assert started.delivery_state == auth_pb.DELIVERY_STATE_QUEUED
    assert (
        dispatched_state(smsc_down_then_console.address, started.challenge_id) == auth_pb.DELIVERY_STATE_SENT
    )
    (sms,) = written(tmp_path / "var" / "sms.jsonl")
    assert (sms["to"], sms["challenge_id"]) == (PHONE, started.challenge_id)
    assert payee in sms["text"]


async def test_the_receipts_smsc_message_id_is_journaled_with_the_delivery(
    smsc: Smsc, through_smpp_on_test_redis: ServeProcess, redis_store: RedisState
):
    """The DELIVRD receipt's entry in the challenge's journal names the SMSC's message id of the part it
    receipted (decision 0041: a dispute can then be matched against the operator's own records)."""
    started = _start(through_smpp_on_test_redis.address, "Zoé Martin")
    state = await asyncio.to_thread(
        _delivery_state,
        through_smpp_on_test_redis.address,
        started.challenge_id,
        auth_pb.DELIVERY_STATE_DELIVERED,
    )
    assert state == auth_pb.DELIVERY_STATE_DELIVERED
    entries = await redis_store.journal.challenge_journal(started.challenge_id)
    delivered = [e for e in entries if e["event"] == "challenge.delivery" and e["outcome"] == "delivered"]
    assert len(delivered) == 1
    assert delivered[0]["provider_id"] in {part.message_id for part in smsc.submitted}


def test_the_smpp_send_logs_no_sms_text_at_info(smsc: Smsc, through_smpp: ServeProcess):
    """At INFO (the default level) the SMPP provider's line of a send names the message reference, the masked
    number, the challenge and the parts, never the text: the payee's name and the amount are the user's
    personal data, and docs/operations.md says no log line holds an SMS text at INFO (decision 0024). It
    logged the whole text, its code hidden, at INFO, where the console and Kannel gateways log it at DEBUG."""
    marker = "".join(chr(ord("a") + b % 26) for b in secrets.token_bytes(8))
    started = _start(through_smpp.address, f"Zoé Martin {marker}")
    assert dispatched_state(through_smpp.address, started.challenge_id) in SENT_OR_DELIVERED
    assert marker in smsc.text()
    output = through_smpp.output()
    assert f"via SMPP to +33*******78 for {mask_challenge(started.challenge_id)} in 2 part(s)" in output
    assert marker not in output
    assert "1 250,00 EUR" not in output
    assert "ENVOYER" not in output

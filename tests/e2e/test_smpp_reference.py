"""Our reference in every submit_sm, and the SMSC's ids in the journal (issue 7 item 2, decision 0041):
through `sesame serve` on the test's Redis, its dispatcher and the smpp34 SMSC simulator, which reads the
`user_message_reference` of each submit_sm on its side."""

from __future__ import annotations

import asyncio
import re
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
from sesame.clients import smpp_pdu
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.clients.sms_reference import user_message_reference
from tests.support.serve_process import ServeProcess, start_serve
from tests.support.smsc import Smsc, serving_in_thread, smpp_settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345677"


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The smpp34 SMSC simulator on a free loopback port, answering from its own thread."""
    with serving_in_thread(Smsc()) as running:
        yield running


@pytest.fixture
def serving(
    smsc: Smsc, redis_server: EmbeddedRedis, redis_store: RedisState, tmp_path: Path
) -> Iterator[ServeProcess]:
    """A `sesame serve` on the test's Redis (emptied first, by `redis_store`) whose only provider is the
    test's SMSC."""
    settings = smpp_settings(smsc, SESAME_REDIS_URL=redis_server.url, SESAME_SMPP_CONNECT_TIMEOUT_SECONDS="2")
    serving = start_serve(tmp_path / "var", settings=settings)
    yield serving
    serving.process.terminate()
    serving.process.wait(timeout=30)


async def test_each_submit_carries_our_reference_and_the_smscs_ids_are_journaled(
    smsc: Smsc, serving: ServeProcess, redis_store: RedisState
) -> None:
    """A transfer's code SMS, sent in two parts: the SMSC read in each submit_sm the 16-bit reference made
    from the reference the journal names (`smpp-<outbox entry>`), and the send's journal entry names the
    message ids the SMSC answered, one per part."""
    transfer = op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=125000),
            payee=op_pb.Payee(name="Zoé Durand", iban="FR7630006000011234567890189"),
            transaction_id="tx-ref",
        )
    )
    async with grpc.aio.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        await enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="ref", client_id="acme", secure_phone=PHONE)
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = await auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="ref", operation=transfer))
    sent = await _sent_entry(redis_store, started.challenge_id)
    ref = sent["provider_ref"]
    assert re.fullmatch(r"smpp-[0-9]+-[0-9]+", ref)  # our reference: the outbox entry's id
    parts = [part for part in smsc.submitted if part.destination == PHONE.removeprefix("+")]
    assert len(parts) >= 2
    expected = user_message_reference(ref).to_bytes(2, "big")
    assert [part.tlvs.get(smpp_pdu.TLV_USER_MESSAGE_REFERENCE) for part in parts] == [expected] * len(parts)
    assert sent["provider_id"].split(" ") == [part.message_id for part in parts]


async def _sent_entry(store: RedisState, challenge_id: str) -> dict[str, str]:
    """The journal entry of the send, once the dispatcher has settled it (within 15 s)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        entries = await store.journal.challenge_journal(challenge_id)
        sent = [e for e in entries if e["event"] == "challenge.delivery" and e["outcome"] == "sent"]
        if sent:
            return sent[0]
        await asyncio.sleep(0.1)
    raise AssertionError("the SMS was not settled as sent")

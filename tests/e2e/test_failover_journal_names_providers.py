"""`sesame serve` with SMPP first and Kannel second: a code SMS the SMSC took in part, then Kannel whole.

The SMSC took part 1 of the 2-part transfer SMS (the code is in it) and refused part 2: the failover sent the
message whole through Kannel, as decision 0030 says. The phone had the code from both, but the send's journal
entry, and so the evidence bundle, named Kannel's reference only: nothing in the record said that the code
had also gone through the SMSC. The entry now names the earlier provider's reference and failure
(`unconfirmed_before`, decision 0120).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import smpp34

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from tests.support.kannel import Kannel, kannel_settings
from tests.support.serve_process import ServeProcess, start_serve
from tests.support.smsc import Smsc, serving_in_thread, smpp_settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345676"


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The smpp34 SMSC simulator: part 1 accepted, every later submit refused (invalid destination)."""
    with serving_in_thread(Smsc(refuse_with=smpp34.ESME_RINVDSTADR, accept_first=1, receipt=None)) as running:
        yield running


@pytest.fixture
def serving(
    smsc: Smsc, kannel: Kannel, redis_server: EmbeddedRedis, redis_store: RedisState, tmp_path: Path
) -> Iterator[ServeProcess]:
    """A `sesame serve` on the test's Redis sending through the SMSC first, the session's Kannel second."""
    settings = {
        **kannel_settings(kannel),
        **smpp_settings(smsc, SESAME_SMPP_CONNECT_TIMEOUT_SECONDS="2"),
        "SESAME_SMS_PROVIDERS": "smpp,kannel",
        "SESAME_REDIS_URL": redis_server.url,
        # One worker, one SMPP session: with one per core, the SMS could be dispatched by a worker whose
        # session was not bound yet and go to Kannel alone (a full run's failure, twice).
        "SESAME_WORKERS": "1",
    }
    serving = start_serve(tmp_path / "var", settings=settings)
    # Bound before the first send: under load the boot's bind came after it, and the send went to Kannel
    # alone (nothing for the SMSC to have taken: a CI run's failure, not the rule's).
    deadline = time.monotonic() + 30
    while smsc.binds == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield serving
    serving.process.terminate()
    serving.process.wait(timeout=30)
    assert serving.process.returncode == 0, serving.output()


async def test_the_send_names_the_smsc_that_took_part_of_it_before_kannel_took_it_whole(
    smsc: Smsc, kannel: Kannel, serving: ServeProcess, redis_store: RedisState
) -> None:
    """The SMSC holds part 1 once, Kannel the whole text; the send's journal entry names Kannel's reference
    as the provider's and the SMSC's reference with `partial` as an earlier one that may have reached the
    phone."""
    transfer = op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=125000),
            payee=op_pb.Payee(name="Zoe Failover", iban="FR7630006000011234567890189"),
            transaction_id="tx-failover",
        )
    )
    async with grpc.aio.insecure_channel(serving.address) as channel:
        await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="fo", client_id="acme", secure_phone=PHONE)
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = await auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="fo", operation=transfer))
    sent = await _sent_entry(redis_store, started.challenge_id)
    assert sent["provider_ref"].startswith("kannel-")
    entry = sent["provider_ref"].removeprefix("kannel-")
    assert sent["unconfirmed_before"] == f"smpp-{entry}:partial"
    assert len([part for part in smsc.submitted if part.destination == PHONE.removeprefix("+")]) == 1
    assert "Failover" in kannel.wait_for_message("Failover").text


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

"""`sesame serve` over SMPP, an SMSC that throttles a later part of a long SMS: that part is asked again.

An SMSC throttles an account past its rate (ESME_RTHROTTLED), and a worker's own pacing does not know the
account's other sessions: any part of a 2-part code SMS may be the one refused. A refusal before acceptance
of part 2 means the SMSC took part 1 and not part 2: part 2 alone, asked again, completes the message. It
was failed as `partial` instead: with one provider the challenge read FAILED (dead letter `max_tries`) while
the phone had the first half (the code in it), and with another provider the phone got part 1 twice.
"""

from __future__ import annotations

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
from sesame.clients import smpp_text
from tests.support.outbox import dispatched_state
from tests.support.serve_process import ServeProcess, served
from tests.support.smsc import Smsc, serving_in_thread, smpp_settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345678"
SENT_OR_DELIVERED = {auth_pb.DELIVERY_STATE_SENT, auth_pb.DELIVERY_STATE_DELIVERED}


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The SMSC simulator: part 1 accepted, the next submit throttled once, then every submit accepted."""
    with serving_in_thread(
        Smsc(refuse_with=smpp34.ESME_RTHROTTLED, accept_first=1, refusals=1, receipt=None)
    ) as running:
        yield running


@pytest.fixture
def serving(smsc: Smsc, tmp_path: Path) -> Iterator[ServeProcess]:
    """A `sesame serve` whose only provider is the SMSC, one try per SMS (the default)."""
    with served(tmp_path / "var", smpp_settings(smsc, SESAME_SMPP_CONNECT_TIMEOUT_SECONDS="2")) as serving:
        yield serving


def test_a_throttled_second_part_is_submitted_again_alone(smsc: Smsc, serving: ServeProcess) -> None:
    """The 2-part transfer SMS: part 1 accepted, part 2 throttled once, then accepted. The challenge reads
    SENT, the SMSC holds both parts once each (one concatenation reference), the text is whole."""
    transfer = op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=125000),
            payee=op_pb.Payee(name="Zoe Martin", iban="FR7630006000011234567890189"),
            transaction_id="tx-1",
        )
    )
    with grpc.insecure_channel(serving.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone=PHONE), timeout=5
        )
        started = auth_grpc.AuthenticationServiceStub(channel).StartChallenge(
            auth_pb.StartChallengeRequest(user_id="ana", operation=transfer), timeout=10
        )
    assert dispatched_state(serving.address, started.challenge_id) in SENT_OR_DELIVERED
    assert smsc.refused == 1
    parts = smsc.submitted
    assert len(parts) == 2
    assert all(part.esm_class & smpp_text.UDHI for part in parts)
    headers = [part.short_message[:6] for part in parts]
    assert headers[0][:5] == headers[1][:5]  # one message: the same reference and count
    assert [header[5] for header in headers] == [1, 2]
    assert "Ne saisissez rien, appelez le numéro au dos de la carte." in smsc.text()

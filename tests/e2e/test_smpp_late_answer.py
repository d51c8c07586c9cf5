"""`sesame serve` over SMPP, an SMSC that answers a submit_sm after the response timeout (decision 0121).

The SMSC took part 2 of the 2-part login SMS and said so, with a message id, after our 1 s timeout; its
receipts for both parts followed. The late answer was dropped ("answered after we gave up on it"): the
message was `partial`, dead-lettered `unconfirmed`, and the receipt for part 2 named an id nobody knew, so
the challenge read FAILED for good while the phone had the whole text. The late answer's id is now kept:
the receipts settle the message, and the challenge reads DELIVERED.
"""

from __future__ import annotations

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
from tests.support.outbox import dispatched_state
from tests.support.serve_process import ServeProcess, served
from tests.support.smsc import Smsc, serving_in_thread, smpp_settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345675"


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The SMSC simulator: the second submit answered 2 s late, each followed by its DELIVRD receipt."""
    with serving_in_thread(Smsc(late={1: 2.0})) as running:
        yield running


@pytest.fixture
def serving(smsc: Smsc, tmp_path: Path) -> Iterator[ServeProcess]:
    """A `sesame serve` whose only provider is the SMSC, a 1 s response timeout, one try per SMS."""
    settings = smpp_settings(smsc, SESAME_SMPP_RESPONSE_TIMEOUT_SECONDS="1")
    with served(tmp_path / "var", settings) as serving:
        yield serving


def test_a_part_taken_after_the_timeout_is_settled_by_its_receipt(smsc: Smsc, serving: ServeProcess) -> None:
    """The send fails (`unconfirmed`: part 2 unanswered in time), then the late answer and the receipts
    come: the challenge reads DELIVERED, and the SMSC holds each part once."""
    with grpc.insecure_channel(serving.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="late", client_id="acme", secure_phone=PHONE), timeout=5
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        login = op_pb.Operation(login=op_pb.Login())
        started = auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id="late", operation=login), timeout=10
        )
        assert dispatched_state(serving.address, started.challenge_id) == auth_pb.DELIVERY_STATE_FAILED
        request = auth_pb.GetChallengeRequest(challenge_id=started.challenge_id)
        deadline = time.monotonic() + 10
        while (challenge := auth.GetChallenge(request, timeout=5).challenge).delivery_state != (
            auth_pb.DELIVERY_STATE_DELIVERED
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert challenge.delivery_state == auth_pb.DELIVERY_STATE_DELIVERED
    assert len(smsc.submitted) == 2
    assert "answered late" in serving.output()

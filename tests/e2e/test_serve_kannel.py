"""`sesame serve` with the Kannel gateway: the SMS leaves through Kannel, its delivery report comes back."""

from __future__ import annotations

import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.support.kannel import Kannel
from tests.support.serve_process import ServeProcess, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345678"


@pytest.fixture
def serving(kannel: Kannel, tmp_path: Path) -> Iterator[ServeProcess]:
    """A `sesame serve` sending through the session's Kannel, reports and metrics on free loopback ports."""
    settings = {
        "SESAME_SMS_GATEWAY": "kannel",
        "SESAME_KANNEL_URL": kannel.url,
        "SESAME_KANNEL_USERNAME": kannel.username,
        "SESAME_KANNEL_PASSWORD": kannel.password,
        "SESAME_DLR_ADDR": "127.0.0.1:0",
        "SESAME_DLR_TOKEN": secrets.token_urlsafe(32),
    }
    serving = start_serve(tmp_path / "var", settings=settings)
    yield serving
    serving.process.terminate()
    serving.process.wait(timeout=30)
    assert serving.process.returncode == 0, serving.output()
    assert kannel.password not in serving.output()


def test_a_challenge_is_sent_through_kannel_then_reported_delivered(
    kannel: Kannel, serving: ServeProcess
) -> None:
    """StartChallenge answers SENT; within 10 s GetChallenge reads DELIVERED from Kannel's report."""
    # A marker of letters only, to find the message at the fake SMSC: the SMS prints no digit of a name.
    payee = "Zoé Durand " + "".join(chr(ord("a") + b % 26) for b in secrets.token_bytes(8))
    transfer = op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=125000),
            payee=op_pb.Payee(name=payee, iban="FR7630006000011234567890189"),
            transaction_id="tx-1",
        )
    )
    with grpc.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone=PHONE), timeout=5
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id="ana", operation=transfer), timeout=10
        )
        assert started.delivery_state == auth_pb.DELIVERY_STATE_QUEUED
        assert payee in kannel.wait_for_message(payee).text
        deadline = time.monotonic() + 10
        state = started.delivery_state
        while state != auth_pb.DELIVERY_STATE_DELIVERED and time.monotonic() < deadline:
            time.sleep(0.1)
            request = auth_pb.GetChallengeRequest(challenge_id=started.challenge_id)
            state = auth.GetChallenge(request, timeout=5).challenge.delivery_state
        assert state == auth_pb.DELIVERY_STATE_DELIVERED
    # The report is counted once recorded, under the provider and the state it reported.
    with urllib.request.urlopen(f"http://127.0.0.1:{serving.metrics_port}/metrics", timeout=5) as reply:
        scraped = reply.read().decode()
    reports = "sesame_sms_delivery_reports_total"
    assert f'{reports}{{provider="kannel",state="delivered"}} 1.0' in scraped
    assert f'{reports}{{provider="kannel",state="expired"}} 0.0' in scraped

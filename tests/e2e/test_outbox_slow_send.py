"""`sesame serve`, a send slower than SESAME_OUTBOX_CLAIM_IDLE_SECONDS: the SMS still goes once.

An entry pending longer than the claim idle time is taken as a dead dispatcher's and sent by another. A live
dispatcher whose send is slow (an SMSC's rate pacing a burst, a slow Kannel, retries and failover) looked
the same: its entries were claimed by the next loop and every code of the burst reached the phone twice.
The dispatcher now keeps the entries it is still sending as its own (their idle time starts again).
"""

from __future__ import annotations

import time
from collections import Counter
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

USERS = 4  # 2-part SMS each, at 1 submit a second: the last leaves ~7 s after the first, past the idle time
QUIET = 3.0  # seconds without a submit: every send, the first and any other, has gone
SENT_OR_DELIVERED = {auth_pb.DELIVERY_STATE_SENT, auth_pb.DELIVERY_STATE_DELIVERED}


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The SMSC simulator, no receipts."""
    with serving_in_thread(Smsc(receipt=None)) as running:
        yield running


@pytest.fixture
def serving(smsc: Smsc, tmp_path: Path) -> Iterator[ServeProcess]:
    """One worker, two dispatch loops, SMPP at 1 submit a second, entries claimed after 3 s idle."""
    settings = smpp_settings(
        smsc, SESAME_SMPP_RATE_PER_SECOND="1", SESAME_DISPATCHERS="2", SESAME_OUTBOX_CLAIM_IDLE_SECONDS="3"
    )
    with served(tmp_path / "var", settings) as serving:
        yield serving


def test_a_burst_paced_past_the_claim_idle_time_is_sent_once(smsc: Smsc, serving: ServeProcess) -> None:
    """Four log-in codes at once (2 parts each) through an SMSC account of 1 submit a second: every
    challenge SENT, each number got its 2 parts once (before: most twice, claimed by the other loop)."""
    phones = [f"+3361234567{n}" for n in range(USERS)]
    with grpc.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        for n, phone in enumerate(phones):
            enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=f"u{n}", client_id="acme", secure_phone=phone), timeout=5
            )
        login = op_pb.Operation(login=op_pb.Login())
        started = [
            auth.StartChallenge(auth_pb.StartChallengeRequest(user_id=f"u{n}", operation=login), timeout=10)
            for n in range(USERS)
        ]
    for challenge in started:
        assert dispatched_state(serving.address, challenge.challenge_id, within=30) in SENT_OR_DELIVERED
    # A second send, if any, is behind the first in the SMSC's pacing: wait until 3 s pass with no submit.
    deadline, seen, quiet_since = time.monotonic() + 30, -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < QUIET:
        if len(smsc.submitted) != seen:
            seen, quiet_since = len(smsc.submitted), time.monotonic()
        time.sleep(0.1)
    parts = Counter(part.destination for part in smsc.submitted)
    assert parts == {phone.removeprefix("+"): 2 for phone in phones}

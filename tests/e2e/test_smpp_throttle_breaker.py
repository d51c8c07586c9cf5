"""`sesame serve` over SMPP, an SMSC that throttles a burst: the breaker stays closed, the next code goes.

ESME_RTHROTTLED is the SMSC asking the account to slow down (a burst past its rate, as at the morning's
log-in wave). It counted as a provider fault: five in a row (two codes' retries) opened the breaker, and every
code of the next SESAME_SMS_BREAKER_OPEN_SECONDS failed at once without being submitted, though the SMSC took
messages again a moment later. A throttle is now retried with backoff as before and not counted by the
breaker (decision 0125).
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
from tests.support.outbox import dispatched_state
from tests.support.serve_process import ServeProcess, served
from tests.support.smsc import Smsc, serving_in_thread, smpp_settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SENT_OR_DELIVERED = {auth_pb.DELIVERY_STATE_SENT, auth_pb.DELIVERY_STATE_DELIVERED}


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The SMSC simulator: the first six submits throttled, every later one accepted."""
    with serving_in_thread(Smsc(refuse_with=smpp34.ESME_RTHROTTLED, refusals=6, receipt=None)) as running:
        yield running


@pytest.fixture
def serving(smsc: Smsc, tmp_path: Path) -> Iterator[ServeProcess]:
    """A `sesame serve` whose only provider is the SMSC, the default retries (3 attempts) and breaker (5)."""
    with served(tmp_path / "var", smpp_settings(smsc)) as serving:
        yield serving


def test_a_throttled_burst_leaves_the_next_code_to_go(smsc: Smsc, serving: ServeProcess) -> None:
    """Two codes each throttled three times (six throttles: FAILED, one try each), then a third code: the
    SMSC takes it (SENT); before, the breaker had opened on the fifth throttle and the third code FAILED
    with nothing submitted."""
    login = op_pb.Operation(login=op_pb.Login())
    states = []
    with grpc.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        for n in range(3):
            user = f"burst{n}"
            enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=user, client_id="acme", secure_phone=f"+3361234510{n}"),
                timeout=5,
            )
            started = auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=user, operation=login), timeout=10
            )
            states.append(dispatched_state(serving.address, started.challenge_id))
    assert states[:2] == [auth_pb.DELIVERY_STATE_FAILED] * 2
    assert states[2] in SENT_OR_DELIVERED
    assert smsc.refused == 6
    assert len(smsc.submitted) == 2  # the third code's two parts

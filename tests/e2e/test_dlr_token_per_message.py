"""A dlr-url's token is its message's own: one seen in Kannel's logs forges no report on another message.

Every dlr-url carried the deployment's report secret itself, and Kannel keeps the dlr-urls in its logs and
in its DLR storage (a database in production). Whoever read one URL there could record any report on any
challenge, for as long as the secret lived: a challenge whose SMS never left read DELIVERED, and its
sealed journal, the evidence of a dispute, said it reached the phone. The token is now an HMAC of the
URL's challenge and reference under the secret: it authenticates that message's reports only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.support.kannel import Kannel, kannel_settings, running_kannel
from tests.support.outbox import dispatched_state
from tests.support.serve_process import ServeProcess, served, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

_TOKEN_IN_LOG = re.compile(r"challenge=([^&\s']+)&ref=([^&\s']+)&token=([A-Za-z0-9_-]+)")


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[Kannel]:
    """A Kannel of this test's own: its front door is closed midway."""
    work = tmp_path / "kannel"
    work.mkdir()
    with running_kannel(work) as running:
        yield running


@pytest.fixture
def serving(kannel: Kannel, tmp_path: Path) -> Iterator[ServeProcess]:
    """`sesame serve` through that Kannel, reports on a loopback port."""
    with served(tmp_path / "var", kannel_settings(kannel, SESAME_SMS_RETRIES="0")) as serving:
        yield serving


def _state(auth: auth_grpc.AuthenticationServiceStub, challenge_id: str) -> int:
    request = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
    return int(auth.GetChallenge(request, timeout=5).challenge.delivery_state)


def test_a_token_from_kannels_log_forges_no_report_on_another_message(
    kannel: Kannel, serving: ServeProcess, tmp_path: Path
) -> None:
    """Challenge A delivered through Kannel, whose log holds A's dlr-url; Kannel's front door closed, B's
    SMS fails. A report for B with A's token is refused (403) and B stays FAILED; so is one for A under a
    reference A's URL does not name. A's own report, replayed, is still taken."""
    port = re.search(r"delivery reports on port (\d+)", serving.output())
    assert port is not None
    dlr = f"http://127.0.0.1:{port.group(1)}/dlr/kannel"
    login = op_pb.Operation(login=op_pb.Login())
    ana = enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone="+33612345678")
    with grpc.insecure_channel(serving.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(ana, timeout=5)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        start = auth_pb.StartChallengeRequest(user_id="ana", operation=login)
        first = auth.StartChallenge(start, timeout=10)
        assert until(lambda: _state(auth, first.challenge_id) == auth_pb.DELIVERY_STATE_DELIVERED, 10)
        logged = (kannel.fakesmsc_log.parent / "smsbox.log").read_text(errors="replace")
        seen = {(c, r, t) for c, r, t in _TOKEN_IN_LOG.findall(logged) if c == first.challenge_id}
        assert seen, "Kannel's log holds A's dlr-url"
        _, ref, token = seen.pop()
        kannel.close_front_door()
        second = auth.StartChallenge(start, timeout=10)
        assert dispatched_state(serving.address, second.challenge_id) == auth_pb.DELIVERY_STATE_FAILED
        with httpx.Client(timeout=5) as http:
            forged = {"challenge": second.challenge_id, "ref": "kannel-x", "token": token, "status": "1"}
            assert http.get(dlr, params=forged).status_code == 403
            other_ref = {"challenge": first.challenge_id, "ref": "kannel-x", "token": token, "status": "2"}
            assert http.get(dlr, params=other_ref).status_code == 403
            replayed = {"challenge": first.challenge_id, "ref": ref, "token": token, "status": "1"}
            assert http.get(dlr, params=replayed).status_code == 200
        time.sleep(0.2)
        assert _state(auth, second.challenge_id) == auth_pb.DELIVERY_STATE_FAILED
        assert _state(auth, first.challenge_id) == auth_pb.DELIVERY_STATE_DELIVERED

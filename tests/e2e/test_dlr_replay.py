"""One message's dlr-url replayed by the hundred (an outside audit, Z3): Kannel retrying its reports does
this, and so does whoever read the URL in Kannel's logs. Each report wrote an INFO line and was counted in
`sesame_sms_delivery_reports_total` (2000 replays: +400 delivered, +800 failed, +800 sent for one SMS that
stayed DELIVERED). Only a report that moved its message is counted now, and the lines go one a minute per
state and outcome. Through `sesame serve`, the real Kannel and its fake SMSC, and the test's Redis."""

from __future__ import annotations

import re
import secrets
import time
import urllib.request
from pathlib import Path

import grpc
import httpx
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.kannel_dlr import report_token
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from tests.support.kannel import Kannel, kannel_settings
from tests.support.serve_process import ServeProcess, served, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPLAYS = 500
STATUSES = ("8", "1", "2", "16", "4")  # sent, delivered, failed, failed, sent


async def test_a_replayed_dlr_url_is_counted_once_and_logged_a_bounded_number_of_times(
    kannel: Kannel, redis_server: EmbeddedRedis, redis_store: RedisState, tmp_path: Path
) -> None:
    """A challenge delivered through Kannel; its dlr-url replayed 500 times over statuses 8, 1, 2, 16, 4:
    every replay answered 200, the metric still counts one delivered report and no failed one, and the
    server's log holds a few report lines, not one per replay."""
    secret = secrets.token_urlsafe(32)
    settings = kannel_settings(kannel, SESAME_REDIS_URL=redis_server.url, SESAME_DLR_TOKEN=secret)
    with served(tmp_path / "var", settings) as serving:
        challenge_id = _delivered(serving)
        entries = await redis_store.journal.challenge_journal(challenge_id)
        ref = next(e["provider_ref"] for e in entries if e.get("outcome") == "delivered")
        report = {"challenge": challenge_id, "ref": ref, "token": report_token(secret, challenge_id, ref)}
        async with httpx.AsyncClient(timeout=5) as http:
            answers = {
                (await http.get(_dlr_url(serving), params=report | {"status": STATUSES[n % 5]})).status_code
                for n in range(REPLAYS)
            }
        assert answers == {200}
        reports = _reports_counted(serving)
    assert (reports["delivered"], reports["failed"]) == (1.0, 0.0)
    assert reports["sent"] <= 1.0  # Kannel's 8, when it came before the sendsms answer was recorded
    lines = re.findall(r"INFO sesame\.sms delivery report .*", serving.output())
    # Kannel's own 8 and 1, then one line for each state's replays that moved nothing.
    assert len(lines) <= 5, lines


def _delivered(serving: ServeProcess) -> str:
    """A login challenge started through the server, once Kannel's report has made it DELIVERED."""
    user = enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone="+33612345678")
    login = auth_pb.StartChallengeRequest(user_id="ana", operation=op_pb.Operation(login=op_pb.Login()))
    with grpc.insecure_channel(serving.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(user, timeout=5)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        challenge_id = auth.StartChallenge(login, timeout=10).challenge_id

        def delivered() -> bool:
            request = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
            state = auth.GetChallenge(request, timeout=5).challenge.delivery_state
            return bool(state == auth_pb.DELIVERY_STATE_DELIVERED)

        assert until(delivered, 15)
    time.sleep(0.5)  # Kannel's later reports, if any, before the replays
    return challenge_id


def _dlr_url(serving: ServeProcess) -> str:
    port = re.search(r"delivery reports on port (\d+)", serving.output())
    assert port is not None
    return f"http://127.0.0.1:{port.group(1)}/dlr/kannel"


def _reports_counted(serving: ServeProcess) -> dict[str, float]:
    """`sesame_sms_delivery_reports_total` for Kannel, by state."""
    url = f"http://127.0.0.1:{serving.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        scraped = reply.read().decode()
    found = re.findall(r'sesame_sms_delivery_reports_total\{provider="kannel",state="(\w+)"\} (\S+)', scraped)
    return {state: float(value) for state, value in found}

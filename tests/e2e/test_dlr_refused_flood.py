"""A flood of forged delivery reports: refused, and logged a bounded number of times.

Anyone who reaches the report port can send a report with a wrong token; each was answered 403 (nothing
written) but logged as a WARNING of its own: 300 forged reports, sent in 0.1 s from outside, wrote 300
WARNING lines, drowning the log and the alerts read from it. A refused report is now logged at most once a
minute per status, the next line counting those held back. Kannel's own reports are still taken. So are
the requests aiohttp's parser refuses before the route (an outside audit, Z4: 1000 request lines over 8 KiB
wrote 1000 WARNINGs): one line a minute per class of error.
"""

from __future__ import annotations

import re
import socket
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
from tests.support.kannel import Kannel, kannel_settings
from tests.support.serve_process import ServeProcess, served, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FORGED = 500
JUNK = 200
# What aiohttp's parser refuses (400): a request line over 8 KiB, and more than 32 header fields.
TOO_LONG = b"GET /dlr/kannel?" + b"a=b&" * 2500 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
TOO_MANY = b"GET /dlr/kannel?a=1 HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(100)) + b"\r\n"


@pytest.fixture
def serving(kannel: Kannel, tmp_path: Path) -> Iterator[ServeProcess]:
    """`sesame serve` through the session's Kannel, reports on a loopback port."""
    with served(tmp_path / "var", kannel_settings(kannel)) as serving:
        yield serving


def test_forged_reports_by_the_hundred_are_refused_and_logged_a_bounded_number_of_times(
    serving: ServeProcess,
) -> None:
    """A challenge sent through Kannel; 500 reports for it with a wrong token: each refused (403), the
    challenge still DELIVERED by Kannel's own report, and one WARNING in the server's log."""
    dlr = f"http://127.0.0.1:{_dlr_port(serving)}/dlr/kannel"
    login = op_pb.Operation(login=op_pb.Login())
    ana = enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone="+33612345678")
    with grpc.insecure_channel(serving.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(ana, timeout=5)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        start = auth_pb.StartChallengeRequest(user_id="ana", operation=login)
        started = auth.StartChallenge(start, timeout=10)
        with httpx.Client(timeout=5) as http:
            forged = {"challenge": started.challenge_id, "ref": "kannel-1-0", "token": "x" * 43}
            forged["status"] = "16"
            answers = [http.get(dlr, params=forged).status_code for _ in range(FORGED)]
        assert answers == [403] * FORGED

        def delivered() -> bool:
            request = auth_pb.GetChallengeRequest(challenge_id=started.challenge_id)
            state = auth.GetChallenge(request, timeout=5).challenge.delivery_state
            return bool(state == auth_pb.DELIVERY_STATE_DELIVERED)

        assert until(delivered, 10)
    refused = re.findall(r"WARNING sesame\.http /dlr/kannel from \S+: (\d+)", serving.output())
    assert sorted(refused) == ["403"], refused


def test_requests_the_parser_refuses_by_the_hundred_are_logged_once_per_class_of_error(
    serving: ServeProcess,
) -> None:
    """200 request lines over 8 KiB and 200 heads of 100 fields: each answered 400, and one WARNING for
    each class of error in the server's log, not one per request."""
    port = _dlr_port(serving)
    answers = [_status(port, junk) for junk in (TOO_LONG, TOO_MANY) for _ in range(JUNK)]
    assert answers == [400] * 2 * JUNK
    refused = re.findall(r"WARNING sesame\.http\.server HTTP request refused: (\w+)", serving.output())
    assert sorted(refused) == ["BadHttpMessage", "LineTooLong"], refused


def _dlr_port(serving: ServeProcess) -> int:
    port = re.search(r"delivery reports on port (\d+)", serving.output())
    assert port is not None
    return int(port.group(1))


def _status(port: int, request: bytes) -> int:
    """The status of the listener's answer to `request`, sent raw on a connection of its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        return int(connection.makefile("rb").readline().split(b" ", 2)[1])

"""`sesame serve` with Kannel behind an HTTP proxy that answers 504: the SMS is not asked for again there.

SESAME_KANNEL_URL may be a TLS-terminating proxy in front of smsbox. Its 504 Gateway Timeout says that it
forwarded the sendsms and Kannel did not answer in time: Kannel may well have taken the message, as on our
own timeout. Every 5xx was read as `unavailable` (Kannel's own "Sending failed": nothing taken) and retried
at the same provider, SESAME_SMS_RETRIES times: each retry could send the code once more. A 504 is now
`timeout`, never asked again at that provider (docs/decisions/0030). Once its tries are spent, an SMS one of
whose tries met such an answer reads `unconfirmed` (decisions 0096, 0097).
"""

from __future__ import annotations

import http.server
import threading
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

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A proxy whose Kannel answers each sendsms too late, 504 (or the next of `answers`, a status whose
    turn came, 503 is Kannel down, nothing taken; or a status and its text); the request counted."""

    forwarded: list[str]
    answers: list[int | tuple[int, bytes]]

    def do_GET(self) -> None:
        self.forwarded.append(self.path)
        answer = self.answers.pop(0) if self.answers else 504
        status, body = answer if isinstance(answer, tuple) else (answer, b"<h1>%d</h1>" % answer)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answers() -> list[int | tuple[int, bytes]]:
    """The proxy's first answers, in turn, before its 504s (a test parametrizes it)."""
    return []


@pytest.fixture
def settings() -> dict[str, str]:
    """Settings of `sesame serve` beside the proxy's (a test parametrizes it)."""
    return {}


@pytest.fixture
def proxy(answers: list[int | tuple[int, bytes]]) -> Iterator[tuple[str, list[str]]]:
    """The proxy on a free loopback port; its URL and the sendsms requests it forwarded."""
    forwarded: list[str] = []
    handler = type("Proxy", (_Proxy,), {"forwarded": forwarded, "answers": list(answers)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", forwarded
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def serving(proxy: tuple[str, list[str]], settings: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    """`sesame serve` whose only provider is Kannel through the proxy (2 retries unless `settings` say)."""
    through_proxy = {
        **settings,
        "SESAME_SMS_PROVIDERS": "kannel",
        "SESAME_KANNEL_URL": proxy[0],
        "SESAME_KANNEL_USERNAME": "sesame",
        "SESAME_KANNEL_PASSWORD": "s3cr3t-kannel",
        "SESAME_DLR_ADDR": "off",
    }
    with served(tmp_path / "var", through_proxy) as serving:
        yield serving


def _login(address: str) -> auth_pb.Challenge:
    """Enrol a user, start a log-in challenge, wait for its SMS to be dispatched: the challenge as read."""
    with grpc.insecure_channel(address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone="+33612345678"),
            timeout=5,
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id="ana", operation=op_pb.Operation(login=op_pb.Login())),
            timeout=10,
        )
        dispatched_state(address, started.challenge_id)
        return auth.GetChallenge(
            auth_pb.GetChallengeRequest(challenge_id=started.challenge_id), timeout=5
        ).challenge


@pytest.mark.parametrize("answers", [[(200, b"0: Accepted for delivery")]])
def test_kannels_words_under_another_2xx_are_taken(
    proxy: tuple[str, list[str]], serving: ServeProcess
) -> None:
    """Found by an outside audit: a proxy that turns Kannel's 202 into 200 made a sent SMS read `refused`
    (and a failover would have sent the code again). Kannel's words under any 2xx: SENT, once."""
    _, forwarded = proxy
    assert _login(serving.address).delivery_state == auth_pb.DELIVERY_STATE_SENT
    assert len(forwarded) == 1


# [] is the proxy's 504 on each try; then a 2xx not in Kannel's words (decision 0155: it read `refused`).
@pytest.mark.parametrize("answers", [[], [(202, b"OK")], [(200, b"<html>accepted</html>")]])
def test_an_answer_that_may_have_sent_the_sms_is_not_asked_again(
    proxy: tuple[str, list[str]], serving: ServeProcess
) -> None:
    """One sendsms forwarded, answered 504 (Kannel may have taken it), or a 2xx in other words than Kannel's
    (something took it): the SMS is FAILED (its one try spent), not sent three times, and its reason is
    `unconfirmed`: the phone may have the code (decision 0096; a 504 read `max_tries`)."""
    _, forwarded = proxy
    challenge = _login(serving.address)
    assert (challenge.delivery_state, challenge.delivery_reason) == (
        auth_pb.DELIVERY_STATE_FAILED,
        "unconfirmed",
    )
    assert len(forwarded) == 1


@pytest.mark.parametrize("answers", [[504, 503]])
@pytest.mark.parametrize(
    "settings",
    [{"SESAME_SMS_MAX_TRIES": "2", "SESAME_OUTBOX_CLAIM_IDLE_SECONDS": "1", "SESAME_SMS_RETRIES": "0"}],
)
def test_an_sms_an_earlier_try_of_which_may_have_gone_is_unconfirmed(
    proxy: tuple[str, list[str]], serving: ServeProcess
) -> None:
    """Two tries: the first answered 504 (Kannel may have taken it), the second 503 (Kannel down, nothing
    taken): FAILED, and `unconfirmed`, not `max_tries`: the phone may have the code (decision 0097)."""
    _, forwarded = proxy
    with grpc.insecure_channel(serving.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone="+33612345678"),
            timeout=5,
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id="ana", operation=op_pb.Operation(login=op_pb.Login())),
            timeout=10,
        )
        assert dispatched_state(serving.address, started.challenge_id) == auth_pb.DELIVERY_STATE_FAILED
        read = auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=started.challenge_id), timeout=5)
    assert len(forwarded) == 2
    assert read.challenge.delivery_reason == "unconfirmed"

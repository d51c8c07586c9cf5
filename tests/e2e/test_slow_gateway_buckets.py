"""A Kannel that takes 7 s to accept an SMS: /metrics says how long, not 'more than 5 s'.

The gateway's latency and the time from an SMS queued to its handing over were histograms whose last finite
bucket was 5 s: anything slower was +Inf only, and histogram_quantile read every p99 beyond as 5 s, the
dashboard's "SMS queued to handed" and "gateway latency" panels flat at 5 s while users waited a minute
(decision 0112).
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_server import EmbeddedRedis
from tests.support.outbox import dispatched_state
from tests.support.serve_process import free_port, served, start_dispatch, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SLOW = 7.0  # seconds the Kannel takes to answer: past the old last bucket, within its timeout
WAITED = 6.0  # seconds an SMS waits in the outbox for a dispatcher


class _SlowKannel(http.server.BaseHTTPRequestHandler):
    """A Kannel smsbox that accepts every sendsms, SLOW seconds after it came."""

    def do_GET(self) -> None:
        time.sleep(SLOW)
        body = b"0: Accepted for delivery"
        self.send_response(202)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kannel() -> Iterator[str]:
    """The slow Kannel on a free loopback port: its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowKannel)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _buckets(port: int, name: str, **labels: str) -> dict[float, float]:
    """The cumulative counts of histogram `name`'s series with `labels`, by upper bound."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == f"{name}_bucket" and labels.items() <= sample.labels.items()
    }


def _start(address: str) -> str:
    """Enrol a user and start a log-in challenge for it: its id."""
    with grpc.insecure_channel(address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone="+33612345678"),
            timeout=5,
        )
        started = auth_grpc.AuthenticationServiceStub(channel).StartChallenge(
            auth_pb.StartChallengeRequest(user_id="ana", operation=op_pb.Operation(login=op_pb.Login())),
            timeout=10,
        )
    return started.challenge_id


def _counted_within(histogram: dict[float, float], low: float, high: float) -> None:
    """The histogram's one observation is in a finite bucket whose bound lies between `low` and `high`."""
    assert histogram[float("inf")] == 1
    finite = [bound for bound, count in histogram.items() if count == 1 and bound != float("inf")]
    assert finite, f"only in +Inf: {histogram}"
    assert low <= min(finite) <= high


def test_a_slow_gateway_is_measured_in_a_finite_bucket(kannel: str, tmp_path: Path) -> None:
    """The one SMS, 7 s at the gateway, is counted in a finite bucket of the gateway's latency."""
    settings = {
        "SESAME_SMS_PROVIDERS": "kannel",
        "SESAME_KANNEL_URL": kannel,
        "SESAME_KANNEL_USERNAME": "sesame",
        "SESAME_KANNEL_PASSWORD": "s3cr3t-kannel",
        "SESAME_KANNEL_TIMEOUT_SECONDS": "15",
        "SESAME_DLR_ADDR": "off",
    }
    with served(tmp_path / "var", settings) as serving:
        assert serving.metrics_port is not None
        challenge = _start(serving.address)
        assert dispatched_state(serving.address, challenge) == auth_pb.DELIVERY_STATE_SENT
        gateway = _buckets(serving.metrics_port, "sesame_dependency_duration_seconds", dependency="sms")
    _counted_within(gateway, SLOW, 2 * SLOW)


def test_an_sms_that_waited_is_measured_in_a_finite_bucket(tmp_path: Path) -> None:
    """An SMS queued while no dispatcher runs, handed over by a `sesame dispatch` started 6 s later: counted
    in a finite bucket of the time from queued to handed."""
    with EmbeddedRedis(tmp_path / "redis") as redis:
        settings = {"SESAME_REDIS_URL": redis.url, "SESAME_DISPATCHERS": "0"}
        with served(tmp_path / "var", settings) as serving:
            _start(serving.address)
            time.sleep(WAITED)
            port = free_port()
            dispatcher = start_dispatch(
                tmp_path / "var", {**settings, "SESAME_METRICS_ADDR": f"127.0.0.1:{port}"}
            )
            try:
                assert until(lambda: _counted(port), 30)
                handed = _buckets(port, "sesame_sms_handed_seconds")
            finally:
                dispatcher.process.terminate()
                dispatcher.process.wait(30)
    _counted_within(handed, WAITED, 4 * WAITED)


def _counted(port: int) -> bool:
    """Whether the dispatcher serving /metrics on `port` has handed an SMS over."""
    try:
        return _buckets(port, "sesame_sms_handed_seconds").get(float("inf")) == 1
    except OSError:  # not listening yet
        return False

"""`sesame serve` with `smpp,kannel`, the SMSC stopped mid-run: SMPP's breaker opens, Kannel takes every
message after it, the metrics and the log say so, and health stays SERVING for the gateway (decision 0030)."""

from __future__ import annotations

import contextlib
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.sms_watch import SMS_HEALTH_SERVICE
from tests.support.kannel import Kannel
from tests.support.outbox import dispatched_state
from tests.support.ports import dead_port
from tests.support.serve_process import ServeProcess, start_serve, until
from tests.support.smsc import Smsc, serving_in_thread

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BEFORE, AFTER, FAULTS = 10, 20, 3
LOGIN = op_pb.Operation(login=op_pb.Login())


@pytest.fixture
def world(kannel: Kannel, tmp_path: Path) -> Iterator[tuple[ServeProcess, int, Smsc, contextlib.ExitStack]]:
    """One worker with `smpp,kannel`; the SMSC (receipts off) in a stack the test may close."""
    with contextlib.ExitStack() as stack:
        smsc = stack.enter_context(serving_in_thread(Smsc(receipt=None)))
        settings = {
            "SESAME_WORKERS": "1",
            "SESAME_SMS_PROVIDERS": "smpp,kannel",
            "SESAME_SMPP_HOST": "127.0.0.1",
            "SESAME_SMPP_PORT": str(smsc.port),
            "SESAME_SMPP_SYSTEM_ID": "sesame",
            "SESAME_SMPP_PASSWORD": "s3cr3t!x",
            "SESAME_SMPP_RESPONSE_TIMEOUT_SECONDS": "1",
            "SESAME_KANNEL_URL": kannel.url,
            "SESAME_KANNEL_USERNAME": kannel.username,
            "SESAME_KANNEL_PASSWORD": kannel.password,
            "SESAME_DLR_ADDR": "off",
            "SESAME_SMS_BREAKER_FAILURES": str(FAULTS),
            "SESAME_SMS_BREAKER_OPEN_SECONDS": "3600",
        }
        serving = start_serve(tmp_path / "var", settings=settings)
        assert serving.metrics_port is not None
        try:
            yield serving, serving.metrics_port, smsc, stack
        finally:
            serving.process.terminate()
            serving.process.wait(timeout=30)


def _start(address: str, first: int, count: int) -> list[int]:
    """Enrol `count` users (each their own number: the send budgets are per user and number), start one
    login challenge each; their delivery states once each SMS was dispatched, one after the other."""
    states = []
    with grpc.insecure_channel(address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        for index in range(first, first + count):
            phone = f"+336123456{index:02d}"
            enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=f"u{index}", client_id="acme", secure_phone=phone),
                timeout=5,
            )
            request = auth_pb.StartChallengeRequest(
                user_id=f"u{index}", operation=op_pb.Operation(login=op_pb.Login())
            )
            reply = auth.StartChallenge(request, timeout=15)
            assert reply.delivery_state == auth_pb.DELIVERY_STATE_QUEUED
            # Once dispatched (the outbox, decision 0025); a receipt may already have made it DELIVERED.
            state = dispatched_state(address, reply.challenge_id)
            states.append(auth_pb.DELIVERY_STATE_SENT if state == auth_pb.DELIVERY_STATE_DELIVERED else state)
    return states


def _scraped(metrics_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def _value(text: str, metric: str, labels: str) -> float:
    found = re.search(rf"{metric}\{{{labels}\}} (\S+)", text)
    return 0.0 if found is None else float(found.group(1))


def test_the_smsc_stopped_mid_run_opens_its_breaker_and_kannel_takes_the_rest(
    world: tuple[ServeProcess, int, Smsc, contextlib.ExitStack],
) -> None:
    """10 challenges through SMPP; the SMSC stops; 20 more all SENT through Kannel. The stopped simulator
    answers a submit with an error status (temporarily unavailable): the first message is tried three times
    there (two retries), which opens the breaker (three faults, whichever way the SMSC fails); the next
    messages skip SMPP. Gauge 2, one log line, SERVING."""
    serving, metrics_port, smsc, stack = world
    assert _start(serving.address, 0, BEFORE) == [auth_pb.DELIVERY_STATE_SENT] * BEFORE
    stack.close()  # the SMSC stops

    assert _start(serving.address, BEFORE, AFTER) == [auth_pb.DELIVERY_STATE_SENT] * AFTER

    text = _scraped(metrics_port)
    attempts = "sesame_sms_provider_attempts_total"
    assert len({part.destination for part in smsc.submitted}) == BEFORE  # a message is 2 parts
    assert _value(text, "sesame_sms_breaker_state", 'provider="smpp"') == 2
    assert _value(text, "sesame_sms_breaker_state", 'provider="kannel"') == 0
    assert _value(text, attempts, 'outcome="sent",provider="smpp"') == BEFORE
    faults = [
        _value(text, attempts, f'outcome="{reason}",provider="smpp"')
        for reason in ("unavailable", "unreachable", "timeout", "lost")
    ]
    assert sum(faults) == FAULTS
    assert _value(text, attempts, 'outcome="open",provider="smpp"') >= AFTER - FAULTS
    assert _value(text, attempts, 'outcome="sent",provider="kannel"') == AFTER
    opened = [line for line in serving.output().splitlines() if "provider smpp circuit breaker open" in line]
    assert len(opened) == 1
    with grpc.insecure_channel(serving.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=SMS_HEALTH_SERVICE), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_past_its_open_period_a_breaker_reads_half_open_with_nothing_sent(tmp_path: Path) -> None:
    """Found from outside: a worker whose breaker had opened, with nothing more to send, said its breaker
    open long after the period (the breaker moved only when asked for an attempt). Past the period, the
    health round reads it half-open, with no send."""
    with dead_port() as port:
        settings = {
            "SESAME_WORKERS": "1",
            "SESAME_SMS_PROVIDERS": "kannel",
            "SESAME_KANNEL_URL": f"http://127.0.0.1:{port}",
            "SESAME_KANNEL_USERNAME": "sesame",
            "SESAME_KANNEL_PASSWORD": "s3cr3t!x",
            "SESAME_DLR_ADDR": "off",
            "SESAME_SMS_RETRIES": "0",
            "SESAME_SMS_BREAKER_FAILURES": "1",
            "SESAME_SMS_BREAKER_OPEN_SECONDS": "3",
        }
        serving = start_serve(tmp_path / "var", settings=settings)
        assert serving.metrics_port is not None
        metrics_port = serving.metrics_port
        try:
            assert _start(serving.address, 0, 1) == [auth_pb.DELIVERY_STATE_FAILED]
            gauge = "sesame_sms_breaker_state"
            assert _value(_scraped(metrics_port), gauge, 'provider="kannel"') == 2
            assert until(lambda: _value(_scraped(metrics_port), gauge, 'provider="kannel"') == 1, 15)
            attempts = _value(
                _scraped(metrics_port),
                "sesame_sms_provider_attempts_total",
                'outcome="unreachable",provider="kannel"',
            )
            assert attempts == 1
        finally:
            serving.process.terminate()
            serving.process.wait(timeout=30)

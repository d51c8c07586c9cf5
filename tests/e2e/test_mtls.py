"""The gRPC port with mTLS and a caller policy: who gets through, what the others see, what is counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.config import Settings
from sesame.server.grpc.call_context import REQUEST_ID_KEY
from sesame.server.grpc.callers import current_caller
from sesame.server.grpc.calls import CallInterceptor
from sesame.server.grpc.policy import parse_policy
from sesame.server.grpc.server import GrpcServer
from sesame.server.metrics import Metrics
from tests.e2e.helpers import CONTEXT, PHONE, counted, transfer
from tests.support.pki import BACKOFFICE, PAYMENTS, Identity, Pki
from tests.support.telemetry_fixtures import JsonLogs
from tests.support.wired_server import ServerOptions, start_wired

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ENROL_USER = "sesame.api.v1.EnrollmentService/EnrollUser"
ENROLMENT_SERVICE = "sesame.api.v1.EnrollmentService"


@dataclass
class Secured:
    """A running mTLS server with the test policy and a plaintext health-only listener."""

    server: GrpcServer
    metrics: Metrics
    pki: Pki

    @property
    def address(self) -> str:
        """The mTLS port, by the IP its certificate names."""
        return f"127.0.0.1:{self.server.port}"

    def channel(self, identity: Identity) -> grpc.aio.Channel:
        """A channel presenting `identity`'s certificate and trusting the test CA."""
        return grpc.aio.secure_channel(self.address, identity.credentials(self.pki.ca))


@pytest.fixture
async def secured(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, pki: Pki
) -> AsyncIterator[Secured]:
    """The composition root's wiring behind mTLS, the test policy and a probe port, read as settings."""
    transport = Settings.from_env({**pki.env, "SESAME_HEALTH_ADDR": "127.0.0.1:0"}).transport
    wired = await start_wired(
        keystore, redis_store, tmp_path / "sms.jsonl", ServerOptions(transport=transport)
    )
    server, running = wired.server, wired.running
    try:
        yield Secured(server, running.metrics, pki)
    finally:
        await server.stop(0)


def _enrolment(user_id: str) -> enrol_pb.EnrollUserRequest:
    return enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=PHONE)


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The google.rpc.ErrorInfo the error carries."""
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


async def test_an_allowed_caller_enrols_and_reads_a_user(secured: Secured) -> None:
    """The backoffice's certificate and policy let it enrol a user and read it back."""
    async with secured.channel(secured.pki.backoffice) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        await enrol.EnrollUser(_enrolment("mtls-user"), timeout=5)
        reply = await enrol.GetUser(enrol_pb.GetUserRequest(user_id="mtls-user"), timeout=5)
    assert reply.user.user_id == "mtls-user"


async def test_the_journal_names_the_service_that_started_and_verified(
    secured: Secured, redis_store: RedisState
) -> None:
    """Challenge journal entries carry the verified identity of the calling service, as evidence."""
    async with secured.channel(secured.pki.backoffice) as channel:
        await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(_enrolment("mtls-journal"), timeout=5)
    async with secured.channel(secured.pki.payments) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = await auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id="mtls-journal", operation=transfer(), context=CONTEXT),
            timeout=5,
        )
        await auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=started.challenge_id, code="000000", operation=transfer(), context=CONTEXT
            ),
            timeout=5,
        )
    journal = await redis_store.journal.challenge_journal(started.challenge_id)
    asked = [e for e in journal if e["event"] in {"challenge.opened", "challenge.verification"}]
    assert [(e["event"], e["caller"]) for e in asked] == [
        ("challenge.opened", PAYMENTS),
        ("challenge.verification", PAYMENTS),
    ]


async def test_the_enrolment_names_the_service_that_asked_and_its_request_id(
    secured: Secured, redis_store: RedisState
) -> None:
    """Found from outside (AJ3): `user.enrolled`, the entry that binds the secure number, named no caller
    and dropped the caller's request id, where every other change names both."""
    request = enrol_pb.EnrollUserRequest(
        user_id="mtls-enrolled", client_id="acme", secure_phone=PHONE, request_id="enrol-7"
    )
    async with secured.channel(secured.pki.backoffice) as channel:
        await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(request, timeout=5)
    [entry] = [
        e for e in await redis_store.users.user_journal("mtls-enrolled") if e["event"] == "user.enrolled"
    ]
    assert (entry["caller"], entry["request_id"]) == (BACKOFFICE, "enrol-7")


async def test_a_caller_allowed_only_to_authenticate_cannot_enrol(secured: Secured) -> None:
    """Payments' EnrollUser is PERMISSION_DENIED with an ErrorInfo, and counted under that code."""
    async with secured.channel(secured.pki.payments) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(_enrolment("denied"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    info = _error_info(caught.value)
    assert (info.reason, info.domain) == ("CALLER_NOT_ALLOWED", "sesame")
    assert dict(info.metadata) == {"method": ENROL_USER, "caller": PAYMENTS}
    labels = {"method": "EnrollUser", "code": "PERMISSION_DENIED"}
    assert await counted(secured.metrics.registry, "sesame_rpc_requests_total", labels) == 1


async def test_a_refusal_is_logged_with_the_caller(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    """The WARNING of a refused call names the method and the caller's identity."""
    async with secured.channel(secured.pki.stranger) as channel:
        with caplog.at_level(logging.WARNING, logger="sesame.grpc"), pytest.raises(grpc.aio.AioRpcError):
            await enrol_grpc.EnrollmentServiceStub(channel).GetUser(
                enrol_pb.GetUserRequest(user_id="anyone"), timeout=5
            )
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert "EnrollmentService/GetUser" in message
    assert "stranger.mabanque.internal" in message


@pytest.mark.parametrize("who", ["no certificate", "foreign CA"])
async def test_a_caller_without_a_certificate_of_our_ca_fails_the_handshake(
    secured: Secured, who: str
) -> None:
    """No client certificate, or one from another CA (even naming an allowed caller): UNAVAILABLE."""
    ca = secured.pki.ca.read_bytes()
    foreign = secured.pki.foreign
    credentials = (
        grpc.ssl_channel_credentials(ca)
        if who == "no certificate"
        else grpc.ssl_channel_credentials(ca, foreign.key.read_bytes(), foreign.cert.read_bytes())
    )
    async with grpc.aio.secure_channel(secured.address, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await enrol_grpc.EnrollmentServiceStub(channel).GetUser(
                enrol_pb.GetUserRequest(user_id="anyone"), timeout=5
            )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_plaintext_client_cannot_use_the_tls_port(secured: Secured) -> None:
    """A client speaking plaintext HTTP/2 to the TLS port gets UNAVAILABLE, not an answer."""
    async with grpc.aio.insecure_channel(secured.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_the_health_listener_answers_serving_in_plaintext_and_nothing_else(secured: Secured) -> None:
    """The probe port reports SERVING without a certificate and does not serve our API."""
    assert secured.server.health_port is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.server.health_port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await enrol_grpc.EnrollmentServiceStub(channel).GetUser(
                enrol_pb.GetUserRequest(user_id="anyone"), timeout=5
            )
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_health_on_the_mtls_port_needs_no_grant(secured: Secured) -> None:
    """A verified caller the policy does not name can still ask whether the server is SERVING."""
    async with secured.channel(secured.pki.stranger) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _first_watched(channel: grpc.aio.Channel, service: str = "") -> int:
    """The first status Health/Watch streams for `service`; the stream is cancelled after it."""
    call = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    try:
        async for reply in call:
            return int(reply.status)
    finally:
        call.cancel()
    raise AssertionError("Watch ended without a status")


async def test_health_watch_streams_serving_on_both_ports(secured: Secured) -> None:
    """Watch (grpc's coroutine-style streaming handler) streams SERVING on the mTLS port and the probe port.

    It failed INTERNAL on both (TypeError) when the decoding interceptor iterated every streaming behaviour
    as an async generator.
    """
    assert secured.server.health_port is not None
    async with secured.channel(secured.pki.stranger) as channel:
        assert await _first_watched(channel) == health_pb2.HealthCheckResponse.SERVING
        assert await _first_watched(channel, ENROLMENT_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.server.health_port}") as channel:
        assert await _first_watched(channel) == health_pb2.HealthCheckResponse.SERVING


async def _list_services(channel: grpc.aio.Channel) -> set[str]:
    async def requests():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(requests()):
        return {service.name for service in reply.list_services_response.service}
    return set()


async def test_reflection_is_only_for_callers_granted_it(secured: Secured) -> None:
    """The backoffice, granted reflection, lists the services; payments gets PERMISSION_DENIED."""
    async with secured.channel(secured.pki.backoffice) as channel:
        assert "sesame.api.v1.EnrollmentService" in await _list_services(channel)
    async with secured.channel(secured.pki.payments) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list_services(channel)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert _error_info(caught.value).metadata["caller"] == PAYMENTS
    # Counted, as every call of ours: the refusal was counted nowhere (an outside audit, AJ4).
    counted = secured.metrics.registry.get_sample_value
    for code in ("OK", "PERMISSION_DENIED"):
        labels = {"method": "ServerReflectionInfo", "code": code}
        for _ in range(200):
            if counted("sesame_rpc_requests_total", labels) == 1:
                break
            await asyncio.sleep(0.01)
        assert counted("sesame_rpc_requests_total", labels) == 1, code


async def test_a_servicer_reads_the_verified_caller(pki: Pki) -> None:
    """Behind the interceptors, `current_caller()` is the identity of the certificate the call came with."""

    async def who_am_i(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return (current_caller() or "").encode()

    server = grpc.aio.server(
        interceptors=[
            CallInterceptor(Metrics(), parse_policy(pki.policy.read_text()), max_concurrent_rpcs=10)
        ]
    )
    handler = grpc.unary_unary_rpc_method_handler(who_am_i)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("sesame.api.v1.EnrollmentService", {"GetUser": handler}),)
    )
    credentials = grpc.ssl_server_credentials(
        [(pki.server.key.read_bytes(), pki.server.cert.read_bytes())],
        root_certificates=pki.ca.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{port}", pki.backoffice.credentials(pki.ca)
        ) as channel:
            answer = await channel.unary_unary("/sesame.api.v1.EnrollmentService/GetUser")(b"", timeout=5)
    finally:
        await server.stop(0)
    assert answer == BACKOFFICE.encode()


async def test_the_log_lines_of_a_call_name_the_calling_service(
    secured: Secured, json_logs: JsonLogs
) -> None:
    """Each line of a call over mTLS carries the caller's certificate identity."""
    async with secured.channel(secured.pki.backoffice) as channel:
        await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(_enrolment("mtls-logged"), timeout=5)
    lines = [line for line in json_logs.lines() if line.get("rpc") == "EnrollUser"]
    assert lines
    assert {line["caller"] for line in lines} == {BACKOFFICE}


async def test_reflection_answers_and_refusals_carry_the_request_id(
    secured: Secured, json_logs: JsonLogs
) -> None:
    """A streaming call has its request id in the trailers as a unary call has (decision 0075): the caller's
    id beside the refusal's status details, on the refusal's log line, and on an answer granted.

    A refused reflection call carried no id at all: only unary calls set it."""

    def ids(requests: object) -> grpc.aio.StreamStreamCall[Any, Any]:
        return reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            requests, metadata=((REQUEST_ID_KEY, "refl-42"),), timeout=5
        )

    async def one() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async with secured.channel(secured.pki.payments) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in ids(one()):
                pass
    trailers = dict(caught.value.trailing_metadata() or ())
    assert trailers[REQUEST_ID_KEY] == "refl-42"
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    refused = [line for line in json_logs.lines() if "CallerNotAllowed" in line.get("event", "")]
    assert [line.get("request_id") for line in refused] == ["refl-42"]
    async with secured.channel(secured.pki.backoffice) as channel:
        call = ids(one())
        assert [reply.list_services_response.service async for reply in call]
        assert dict(await call.trailing_metadata())[REQUEST_ID_KEY] == "refl-42"

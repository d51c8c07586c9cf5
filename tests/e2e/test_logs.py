"""The server's JSON log lines through real calls: who, which call, which request, at which level."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import code_pb2, status_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain.challenges import user_tag
from sesame.server.domain.privacy import mask_challenge, mask_user
from sesame.server.grpc.call_context import REQUEST_ID_KEY
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, started, transfer, wrong
from tests.support.outbox import sms_in
from tests.support.serve_process import served, start_serve
from tests.support.telemetry_fixtures import JsonLogs

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USER = "customer-0042"


def _of_request(logs: JsonLogs, request_id: str) -> list[dict[str, Any]]:
    return [line for line in logs.lines() if line.get("request_id") == request_id]


async def _verify_wrong(live: Live, metadata: tuple[tuple[str, str], ...]) -> str:
    """Submit a wrong code with `metadata`; the request id the server sent back."""
    await enrolled(live, USER)
    challenge_id, code = await started(live, USER)
    call = live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=challenge_id, code=wrong(code), operation=transfer(), context=CONTEXT
        ),
        metadata=metadata,
    )
    await call
    assert REQUEST_ID_KEY not in dict(await call.initial_metadata())  # a batch of its own: decision 0075
    return str(dict(await call.trailing_metadata())[REQUEST_ID_KEY])


async def test_each_line_of_a_call_carries_its_request_id_rpc_caller_and_masked_user(
    live: Live, json_logs: JsonLogs
) -> None:
    """VerifyChallenge names only a challenge, yet its lines name the masked user; the caller's id is kept."""
    request_id = await _verify_wrong(live, ((REQUEST_ID_KEY, "bank-req-42"),))
    assert request_id == "bank-req-42"
    lines = _of_request(json_logs, request_id)
    assert lines
    assert {(line["rpc"], line["caller"], line["user"]) for line in lines} == {
        ("VerifyChallenge", "unidentified", mask_user(USER))
    }
    (answered,) = [line for line in lines if "code" in line]
    assert (answered["level"], answered["code"], answered["result"]) == (
        "info",
        "OK",
        "VERIFY_RESULT_WRONG_CODE",
    )


@pytest.mark.parametrize("sent", ["has spaces in it", "x" * 65, 'quote"d'])
async def test_a_malformed_request_id_is_replaced_by_a_fresh_one(
    live: Live, json_logs: JsonLogs, sent: str
) -> None:
    """An `x-request-id` that is not short and plain is not logged: the call gets an id of its own."""
    request_id = await _verify_wrong(live, ((REQUEST_ID_KEY, sent),))
    assert len(request_id) == 32
    assert int(request_id, 16) >= 0
    assert _of_request(json_logs, request_id)
    assert sent not in json_logs.text()


async def test_without_a_request_id_each_call_gets_its_own(live: Live, json_logs: JsonLogs) -> None:
    """Calls without `x-request-id` get distinct ids, each on the lines of its own call only."""
    await enrolled(live, USER)
    first, second = await started(live, USER), await started(live, USER, transfer(amount_minor=5))
    starts = [line for line in json_logs.lines() if line.get("rpc") == "StartChallenge"]
    ids = {line["request_id"] for line in starts}
    assert len(ids) == 2
    assert first != second


async def test_a_refusal_carries_its_request_id_beside_its_status_details(live: Live) -> None:
    """A refusal's trailers hold the request id and the rich status together: the abort keeps the first."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.GetUser(
            enrol_pb.GetUserRequest(user_id="nobody-here"), metadata=((REQUEST_ID_KEY, "bank-req-7"),)
        )
    trailers = dict(caught.value.trailing_metadata() or ())
    assert trailers[REQUEST_ID_KEY] == "bank-req-7"
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert (status.code, caught.value.code()) == (code_pb2.NOT_FOUND, grpc.StatusCode.NOT_FOUND)
    assert status.message == caught.value.details()


async def test_an_undecodable_request_carries_a_fresh_request_id(live: Live) -> None:
    """Bytes that are not a request are refused with an id of their own in the trailers, details kept."""
    path = "/sesame.api.v1.EnrollmentService/GetUser"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.channel.unary_unary(path)(b"\xff\x01")
    trailers = dict(caught.value.trailing_metadata() or ())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len(str(trailers[REQUEST_ID_KEY])) == 32
    assert status_pb2.Status.FromString(trailers["grpc-status-details-bin"]).code == code_pb2.INVALID_ARGUMENT


async def test_a_routine_refusal_is_info_with_its_reason(live: Live, json_logs: JsonLogs) -> None:
    """An unknown user and a spent resend are INFO lines naming the reason; nothing reaches WARNING."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="nobody-here"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    await enrolled(live, USER)
    challenge_id, _ = await started(live, USER)
    with pytest.raises(grpc.aio.AioRpcError):
        await live.auth.ResendChallenge(
            auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
        )
    lines = json_logs.lines()
    refusals = {(line["rpc"], line["reason"], line["level"]) for line in lines if "reason" in line}
    assert refusals == {("GetUser", "UserNotFound", "info"), ("ResendChallenge", "ResendRefused", "info")}
    assert [line for line in lines if line["level"] in {"warning", "error", "critical"}] == []


async def test_a_fault_is_a_warning_with_its_reason(
    live: Live, json_logs: JsonLogs, redis_client: aioredis.Redis
) -> None:
    """A challenge under an OTP key version this HSM lacks: UNAVAILABLE, logged as a WARNING naming why."""
    await enrolled(live, USER)
    challenge_id, code = await started(live, USER)
    nonce, _, digits, tag = challenge_id.split(".")
    elsewhere = f"{nonce}.k999.{digits}.{tag}"  # as a peer replica holding OTP key v999 would have opened it
    moved = live.store.keys.challenge(elsewhere)
    await redis_client.rename(live.store.keys.challenge(challenge_id), moved)
    await redis_client.hset(moved, mapping={"challenge_id": elsewhere, "key_version": 999})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=elsewhere, code=code, operation=transfer(), context=CONTEXT
            )
        )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    (fault,) = [line for line in json_logs.lines() if "reason" in line]
    assert (fault["level"], fault["reason"], fault["challenge"]) == (
        "warning",
        "KeyVersionUnavailable",
        f"{nonce}.k999.{digits}",  # without its user tag (decision 0158)
    )


def test_serve_writes_one_json_object_per_line_at_the_level_asked(tmp_path: Path) -> None:
    """`sesame serve` with SESAME_LOG_FORMAT=json: every line it prints parses, the boot lines included."""
    served = start_serve(tmp_path / "var", settings={"SESAME_LOG_FORMAT": "json", "SESAME_LOG_LEVEL": "INFO"})
    try:
        with grpc.insecure_channel(served.address) as channel:
            get_user = channel.unary_unary(
                "/sesame.api.v1.EnrollmentService/GetUser",
                request_serializer=enrol_pb.GetUserRequest.SerializeToString,
                response_deserializer=enrol_pb.GetUserResponse.FromString,
            )
            with pytest.raises(grpc.RpcError):
                get_user(enrol_pb.GetUserRequest(user_id="nobody-here"), timeout=10)
    finally:
        served.process.terminate()
        served.process.wait(timeout=30)
    lines = [json.loads(line) for line in served.output().splitlines() if line.strip()]
    assert any(line["event"].startswith("sesame serving gRPC") for line in lines)
    assert {line["level"] for line in lines} <= {"info", "warning"}
    (answered,) = [line for line in lines if line.get("rpc") == "GetUser" and "code" in line]
    assert (answered["code"], answered["user"]) == ("NOT_FOUND", mask_user("nobody-here"))


def test_no_line_carries_the_user_tag_of_a_challenge_id(tmp_path: Path) -> None:
    """Found by an outside audit: a challenge id ends with `.u` and the start of an unkeyed SHA-256 of the
    user id, and lines named the whole id: a customer number's hash was searched back in 0.06 s beside the
    `user` field that masks it. The lines of a start, its SMS and a wrong code name the challenge by its
    nonce, never by the tag (decision 0158)."""
    user = "4006172938"
    var = tmp_path / "var"
    settings = {"SESAME_LOG_FORMAT": "json", "SESAME_LOG_LEVEL": "INFO", "SESAME_WORKERS": "1"}
    with served(var, settings) as serving, grpc.insecure_channel(serving.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user, client_id="acme", secure_phone="+33612345678"), timeout=5
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        login = op_pb.Operation(login=op_pb.Login())
        challenge_id = auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user, operation=login), timeout=10
        ).challenge_id
        _, code = sms_in(var / "sms.jsonl", challenge_id)
        auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(challenge_id=challenge_id, code=wrong(code), operation=login),
            timeout=10,
        )
        # Ids altered by their caller kept the tag in the log line (an outside audit, AM2).
        for altered in (challenge_id.upper(), f"{challenge_id}.x", challenge_id * 2):
            with contextlib.suppress(grpc.RpcError):
                auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=altered), timeout=10)
    tag = user_tag(user)
    assert challenge_id.endswith(f".u{tag}")
    nonce = challenge_id.partition(".")[0]
    lines = [json.loads(line) for line in serving.output().splitlines() if line.strip()]
    naming = [line for line in lines if nonce in json.dumps(line)]
    assert {line.get("rpc") for line in naming} >= {"VerifyChallenge", None}  # the call's and the SMS's
    assert any(line.get("challenge") == mask_challenge(challenge_id) for line in naming)
    assert tag not in serving.output().lower()

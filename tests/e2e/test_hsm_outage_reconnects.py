"""The HSM gone while `sesame serve` runs: calls are refused UNAVAILABLE at once, and a worker tries to
reconnect at most about once a second, not once per call (decision 0110).

An outside fault drill (2 workers, a load of StartChallenge) moved the SoftHSM token's directory away for
12 s: every Start was refused UNAVAILABLE with RetryInfo, as it should, but each refused call first logged in
to the token again (a reconnect) and logged two lines for it, `HSM session lost (GeneralError); reconnecting`
and `HSM unavailable after a reconnect (GeneralError)`: 3,470 reconnects and 6,940 lines in 12 s, a login
storm on a network HSM in trouble and a log flood, on top of each refused call's own line.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.e2e.helpers import retry_info, transfer
from tests.support.serve_process import ServeProcess, start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USERS = 6
STARTS = 60  # 10 a user: within their send budgets, which a refused Start does not spend anyway
RECONNECT_LINES = ("HSM session lost", "HSM unavailable after a reconnect")


def reconnect_lines(serving: ServeProcess) -> int:
    return sum(serving.output().count(line) for line in RECONNECT_LINES)


def start(auth: auth_grpc.AuthenticationServiceStub, n: int) -> tuple[grpc.StatusCode, bool]:
    """A Start's code, and whether its refusal carried RetryInfo."""
    request = auth_pb.StartChallengeRequest(user_id=f"u-{n % USERS}", operation=transfer(100 + n))
    try:
        auth.StartChallenge(request, timeout=10)
    except grpc.RpcError as error:
        return error.code(), retry_info(error)  # type: ignore[arg-type,attr-defined]
    return grpc.StatusCode.OK, False


def test_a_token_gone_is_refused_at_once_without_a_reconnect_per_call(
    tmp_path: Path, stopped: list[ServeProcess]
) -> None:
    """The token's directory moved away: 60 Starts, each UNAVAILABLE with RetryInfo, and a handful of
    reconnect lines (before: two for each call, 120); moved back, Starts answer OK again within seconds."""
    var = tmp_path / "var"
    serving = start_serve(var, {"SESAME_DISPATCHERS": "0"})
    stopped.append(serving)
    tokens = var / "softhsm" / "tokens"
    with grpc.insecure_channel(serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        for n in range(USERS):
            enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=f"u-{n}", client_id="acme", secure_phone=f"+3361200000{n}")
            )
        assert start(auth, 0) == (grpc.StatusCode.OK, False)
        tokens.rename(tokens.with_name("tokens.away"))
        began = time.monotonic()
        codes = [start(auth, n) for n in range(1, STARTS + 1)]
        took = time.monotonic() - began
        assert set(codes) == {(grpc.StatusCode.UNAVAILABLE, True)}
        # A reconnect (two lines) per second or so, the health round's included; not two lines per call.
        assert reconnect_lines(serving) <= 2 * (took + 3), serving.output()[-3000:]
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        assert until(lambda: health.Check(health_pb2.HealthCheckRequest()).status == not_serving, 5)
        tokens.with_name("tokens.away").rename(tokens)
        assert until(lambda: start(auth, STARTS + 1)[0] is grpc.StatusCode.OK, 15)
    assert "Traceback" not in serving.output()

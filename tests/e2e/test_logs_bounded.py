"""What a request names is logged with every line of its call (the masked user, the challenge id), before the
request is checked: a caller's oversized or hostile id is logged as `(malformed)`, so that one call cannot
write 60 KB log lines (a challenge id of 60,000 characters did, on each of its lines) nor its own text."""

from __future__ import annotations

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from tests.e2e.conftest import Live
from tests.support.telemetry_fixtures import JsonLogs

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# fixed time: a forged log line's text, sent as a field: no instant is read from it
HOSTILE = "A" * 60_000 + '\n2026-12-01T00:00:00Z INFO sesame.grpc forged line "caller": "backoffice"'


async def test_an_oversized_or_hostile_id_is_logged_as_malformed(live: Live, json_logs: JsonLogs) -> None:
    """A 60,000-character challenge id and user id with a forged line: refused, and no log line of the calls
    is over 2 KB or holds the caller's text."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=HOSTILE))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id=HOSTILE))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    lines = json_logs.lines()
    assert {line.get("challenge") for line in lines if "challenge" in line} == {"(malformed)"}
    assert {line.get("user") for line in lines if "user" in line} == {"(malformed)"}
    assert max(len(line) for line in json_logs.text().splitlines()) < 2048
    assert "forged line" not in json_logs.text()

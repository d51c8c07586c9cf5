"""Kannel's own message id (issue 7 item 2, decision 0041): its sendsms answer carries none, its delivery
report does (`%F` in the dlr-url), and the challenge's journal keeps it with the report. Through `sesame
serve`, the real Kannel and its fake SMSC, and the real Redis the server uses."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from tests.support.kannel import Kannel
from tests.support.serve_process import start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PHONE = "+33612345679"
# The fake SMSC names its messages by UUID; an SMPP SMSC by its own id (hex or decimal).
SMSC_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def address(
    kannel: Kannel, redis_server: EmbeddedRedis, redis_store: RedisState, tmp_path: Path
) -> Iterator[str]:
    """A `sesame serve` on the test's Redis (emptied first, by `redis_store`: the server's fresh token must
    find no data of another's keys), sending through the session's Kannel, reports on loopback."""
    settings = {
        "SESAME_REDIS_URL": redis_server.url,
        "SESAME_SMS_GATEWAY": "kannel",
        "SESAME_KANNEL_URL": kannel.url,
        "SESAME_KANNEL_USERNAME": kannel.username,
        "SESAME_KANNEL_PASSWORD": kannel.password,
        "SESAME_DLR_ADDR": "127.0.0.1:0",
        "SESAME_DLR_TOKEN": secrets.token_urlsafe(32),
    }
    serving = start_serve(tmp_path / "var", settings=settings)
    yield serving.address
    serving.process.terminate()
    serving.process.wait(timeout=30)


async def test_kannels_message_id_is_journaled_with_its_delivery_report(
    address: str, redis_store: RedisState
) -> None:
    """Delivered through Kannel: the delivery report's entry in the challenge's journal names the SMSC's
    message id beside our reference; Kannel's earlier report (accepted by the SMSC, no id yet) names none."""
    user = "kid-" + secrets.token_hex(4)
    async with grpc.aio.insecure_channel(address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        await enrol.EnrollUser(enrol_pb.EnrollUserRequest(user_id=user, client_id="acme", secure_phone=PHONE))
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = await auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user, operation=op_pb.Operation(login=op_pb.Login()))
        )
        deadline = time.monotonic() + 15
        state = started.delivery_state
        while state != auth_pb.DELIVERY_STATE_DELIVERED and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            got = await auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=started.challenge_id))
            state = got.challenge.delivery_state
    assert state == auth_pb.DELIVERY_STATE_DELIVERED
    entries = await redis_store.journal.challenge_journal(started.challenge_id)
    reports = [e for e in entries if e["event"] == "challenge.delivery" and e["outcome"] != "sent"]
    delivered = [e for e in reports if e["outcome"] == "delivered"]
    assert len(delivered) == 1
    assert SMSC_ID.fullmatch(delivered[0]["provider_id"])
    assert delivered[0]["provider_ref"].startswith("kannel-")
    # The report that the SMSC accepted it comes before the SMSC's id: it journals no empty id.
    assert all(e.get("provider_id", "x") for e in reports)

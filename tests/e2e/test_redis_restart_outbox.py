"""Redis killed and restarted (with its append-only file, as `make run` runs it) while Starts are queued and
sent: no acknowledged challenge is lost, every one's SMS leaves, and none twice.

Before decision 0055 a dispatcher whose record of a send the gateway had taken failed (Redis away for the
second of its restart) left the entry pending, and once idle past SESAME_OUTBOX_CLAIM_IDLE_SECONDS it was
claimed and the same SMS sent again: 64 of 199 codes went twice in one drill, though no dispatcher died. Now
the dispatcher asks the store again, within half the claim idle time, before giving the entry up.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.support.serve_process import start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CLAIM_IDLE = 6  # seconds: a pending entry is claimed again soon, so that a second send shows in the test
USERS = 40
CONNECTIONS = 4
STARTS = 150  # per connection, 16 at a time each
SENT_BEFORE_KILL = 40
SETTINGS = {
    "SESAME_OUTBOX_CLAIM_IDLE_SECONDS": str(CLAIM_IDLE),
    # Budgets out of the way: the drill is about the outbox, not about anti-pumping.
    "SESAME_SEND_BUDGET_USER": "100000",
    "SESAME_SEND_BUDGET_PHONE": "100000",
    "SESAME_SEND_CEILING_CALLER": "100000",
    "SESAME_SEND_CEILING_GLOBAL": "100000",
}
LOGIN = op_pb.Operation(login=op_pb.Login())


async def _starts(auth: auth_grpc.AuthenticationServiceStub, tag: str, acked: dict[str, str]) -> None:
    """STARTS Starts with request ids, 16 in flight; the challenge of each one answered OK goes in `acked`."""
    room = asyncio.Semaphore(16)
    refused: list[grpc.aio.AioRpcError] = []

    async def one(n: int) -> None:
        request = auth_pb.StartChallengeRequest(
            user_id=f"u{n % USERS}", operation=LOGIN, request_id=f"{tag}-{n}"
        )
        async with room:
            try:
                acked[request.request_id] = (await auth.StartChallenge(request, timeout=10)).challenge_id
            except grpc.aio.AioRpcError as error:
                refused.append(error)

    await asyncio.gather(*(one(n) for n in range(STARTS)))
    # Redis away: UNAVAILABLE, documented, retry. Anything else is told in full (an INTERNAL without a server
    # log line was seen twice in ~26 runs, decision 0057: its origin is still unknown).
    others = [
        (e.code(), e.details(), e.debug_error_string())
        for e in refused
        if e.code() != grpc.StatusCode.UNAVAILABLE
    ]
    assert others == []


async def _kill_redis_once(var: Path) -> None:
    """SIGKILL the embedded redis-server while SMS are being sent (some have left: the dispatcher is busy
    with a batch, some of it handed to the gateway and not recorded yet)."""
    sms = var / "sms.jsonl"
    for _ in range(3000):  # polled: the Starts and the dispatcher run elsewhere
        if sms.is_file() and sms.read_text().count("\n") >= SENT_BEFORE_KILL:
            break
        await asyncio.sleep(0.01)
    os.kill(int((var / "redis" / "redis.pid").read_text()), signal.SIGKILL)


async def _all_sent(auth: auth_grpc.AuthenticationServiceStub, challenges: list[str]) -> None:
    """Wait (bounded) until GetChallenge says SENT for each challenge."""
    waiting = list(challenges)
    for _ in range(300):
        still = []
        for challenge_id in waiting:
            try:
                request = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
                got = await auth.GetChallenge(request, timeout=5)
            except grpc.aio.AioRpcError:
                still.append(challenge_id)  # Redis not back yet
                continue
            if got.challenge.delivery_state != auth_pb.DELIVERY_STATE_SENT:
                still.append(challenge_id)
        if not still:
            return
        waiting = still
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(waiting)} acknowledged challenges never SENT")


async def test_a_redis_restart_under_load_loses_no_challenge_and_sends_no_code_twice(tmp_path: Path) -> None:
    var = tmp_path / "var"
    serving = start_serve(var, settings=SETTINGS)
    options = (("grpc.use_local_subchannel_pool", 1),)  # a connection each
    channels = [grpc.aio.insecure_channel(serving.address, options=options) for _ in range(CONNECTIONS)]
    acked: dict[str, str] = {}
    try:
        enrol = enrol_grpc.EnrollmentServiceStub(channels[0])
        for n in range(USERS):
            phone = f"+336120000{n:02d}"
            user = enrol_pb.EnrollUserRequest(user_id=f"u{n}", client_id="acme", secure_phone=phone)
            await enrol.EnrollUser(user)
        auths = [auth_grpc.AuthenticationServiceStub(channel) for channel in channels]
        await asyncio.gather(
            *(_starts(auth, f"c{k}", acked) for k, auth in enumerate(auths)), _kill_redis_once(var)
        )
        challenges = list(acked.values())
        await _all_sent(auths[0], challenges)
        # Twice the claim idle time: an entry left pending would have been claimed and sent again by now.
        await asyncio.sleep(2 * CLAIM_IDLE + 1)
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
        serving.process.terminate()
        serving.process.wait(timeout=30)
    sent = collections.Counter(
        json.loads(line)["challenge_id"] for line in (var / "sms.jsonl").read_text().splitlines() if line
    )
    assert len(challenges) >= SENT_BEFORE_KILL
    assert [c for c in challenges if sent[c] != 1] == []

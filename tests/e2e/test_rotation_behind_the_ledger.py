"""A key the servers take up is in the key ledger before any challenge names it (docs/decisions/0115).

`sesame keys rotate` records its new key in the ledger itself, right after the ceremony. Killed in between
(SIGTERM or SIGKILL), or with Redis away at that moment, it left a key on the
token that the running servers took up within a minute and the ledger never heard of until their next
boot. A token then restored from a backup made before that key booted without a word, and the next rotation
made the same label again: the codes sent under the first key read WRONG_CODE (counted against their
users), where decision 0015 answers KEY_VERSION_UNAVAILABLE and refuses the boot.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_server import url_of_running
from tests.e2e.helpers import CONTEXT, PHONE, transfer
from tests.support.dev_token import on_dev_token
from tests.support.serve_process import run_serve, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# No SMS is sent; a start a second until the rotation is taken up stays within the user's and the number's
# budgets. The newest keys are read again every 2 s, not every minute: the test waits for that read.
REREAD_SECONDS = 2
SETTINGS = {
    "SESAME_DISPATCHERS": "0",
    "SESAME_SEND_BUDGET_USER": "1000",
    "SESAME_SEND_BUDGET_PHONE": "1000",
    "SESAME_HSM_KEY_REREAD_SECONDS": str(REREAD_SECONDS),
}


# The ceremony of `sesame keys rotate` alone, its record in the key ledger never made.
_ROTATE_UNRECORDED = """
import sys
from pathlib import Path
from sesame.hsm import keys
from sesame.hsm.softhsm import bootstrap_dev_token
from sesame.server.domain.model import KeyKind
print(keys.rotate_keys(bootstrap_dev_token(Path(sys.argv[3]), create=False), KeyKind.OTP, above=0).label)
"""


def _rotate_without_the_ledger(var: Path) -> None:
    """`sesame keys rotate`'s ceremony on the server's development token, the ledger not told: as when a
    rotate is killed between its ceremony and its record (or Redis was away then)."""
    made = on_dev_token(var, _ROTATE_UNRECORDED, str(var))
    assert made.stdout.splitlines() == ["sesame-otp-v2"]


async def _ledger(var: Path) -> dict[str, str]:
    client = aioredis.Redis.from_url(url_of_running(var / "redis"))
    try:
        raw = await client.hgetall(Keyspace("sesame").key_ledger())
    finally:
        await client.aclose()
    return {name.decode(): value.decode() for name, value in raw.items()}


async def test_a_rotated_key_is_in_the_ledger_before_a_challenge_names_it(tmp_path: Path) -> None:
    var = tmp_path / "var"
    serving = start_serve(var, settings=SETTINGS)
    try:
        backup = tmp_path / "softhsm-before"
        shutil.copytree(var / "softhsm", backup)  # the token as a backup made before the rotation holds it
        _rotate_without_the_ledger(var)
        assert (await _ledger(var))["otp"] == "1"
        async with grpc.aio.insecure_channel(serving.address) as channel:
            await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
                enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=PHONE)
            )
            auth = auth_grpc.AuthenticationServiceStub(channel)
            deadline = time.monotonic() + REREAD_SECONDS + 15  # the server re-reads within 2 s
            while True:
                started = await auth.StartChallenge(
                    auth_pb.StartChallengeRequest(user_id="alice", operation=transfer(), context=CONTEXT)
                )
                if ".k2." in started.challenge_id:
                    break
                assert time.monotonic() < deadline, "the server never took up sesame-otp-v2"
                await auth.CancelChallenge(auth_pb.CancelChallengeRequest(challenge_id=started.challenge_id))
                await asyncio.sleep(1)
        ledger = await _ledger(var)
        assert ledger["otp"] == "2"
        assert "sesame-otp-v2" in ledger
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    assert serving.process.returncode == 0

    # The token restored from the backup lacks the key a challenge was opened under: the boot refuses it.
    shutil.rmtree(var / "softhsm")
    shutil.copytree(backup, var / "softhsm")
    refused = run_serve(var, SETTINGS)
    assert refused.returncode == 2, refused.stdout
    said = "lacks keys Redis holds data under (sesame-otp-v2 was used, the token's newest is v1)"
    assert said in refused.stdout

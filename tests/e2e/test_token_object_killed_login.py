"""A process killed as SoftHSM rewrites the token's token.object loses no token (decision 0127).

SoftHSM rewrites token.object (the token's label, PIN blobs and flags) at every C_Login: it truncates it,
then writes it again. `sesame keys rotate` sent SIGKILL between the two left it empty, and the token with
every key on it was gone: `sesame serve`, `keys list` and a second rotate all answered `NoSuchToken`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_server import EmbeddedRedis
from tests.e2e.helpers import CONTEXT, PHONE, transfer
from tests.support.outbox import sms_in
from tests.support.serve_process import sesame_on, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

_WRITE = re.compile(r"^(?P<thread>\d+) +write\(\d+<(?P<path>[^>]+)>")


def _rotate(var: Path, *tracing: str, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """`sesame keys rotate` on `var`'s token, run by `tracing`, with the ledger of `redis_url` if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    ledger = {"SESAME_REDIS_URL": redis_url} if redis_url is not None else {}
    return subprocess.run(
        [*tracing, sys.executable, "-m", "sesame.server.cli", "keys", "rotate"],
        env={**env, "SESAME_VAR_DIR": str(var), **ledger},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _token_object_write(var: Path, scratch: Path) -> int:
    """The number of the write that fills token.object again at the rotate's login, counted as strace
    counts the writes of the thread that makes it: from a run on a copy of the token."""
    copy = scratch / "var"
    shutil.copytree(var / "softhsm", copy / "softhsm")
    trace = scratch / "trace"
    done = _rotate(copy, "strace", "-f", "-qq", "-y", "-e", "trace=write", "-o", str(trace))
    assert done.returncode == 0, done.stderr[-2000:]
    writes = [m for line in trace.read_text().splitlines() if (m := _WRITE.match(line))]
    (hsm_thread,) = {m["thread"] for m in writes if m["path"].endswith("/token.object")}
    of_thread = [m["path"] for m in writes if m["thread"] == hsm_thread]
    return of_thread.index(next(path for path in of_thread if path.endswith("/token.object"))) + 1


async def test_a_rotate_killed_as_it_logs_in_leaves_the_token_and_its_keys(tmp_path: Path) -> None:
    """Killed between SoftHSM's truncation of token.object and its write, a rotate leaves a token that the
    next `sesame serve` opens with its keys: a code is sent and verified under sesame-otp-v1."""
    var = tmp_path / "var"
    serving = start_serve(var)
    serving.process.terminate()
    serving.process.wait(timeout=30)
    at = _token_object_write(var, tmp_path / "scratch")
    # The embedded Redis's ledger, started here: a redis-server the rotate started itself would be traced too,
    # and killed at its own write number `at`.
    ledger = EmbeddedRedis(var / "redis")
    ledger.start()
    try:
        killed = _rotate(
            var,
            "strace",
            "-f",
            "-qq",
            "-o",
            os.devnull,
            "-e",
            "trace=write",
            "-e",
            f"inject=write:signal=SIGKILL:when={at}",
            redis_url=ledger.url,
        )
    finally:
        ledger.stop()
    assert killed.returncode in {-9, 128 + 9}, killed.stderr[-2000:]
    (token_object,) = (var / "softhsm" / "tokens").glob("*/token.object")
    assert token_object.stat().st_size == 0  # the state the kill leaves

    serving = start_serve(var)  # refused before: NoSuchToken
    try:
        async with grpc.aio.insecure_channel(serving.address) as channel:
            await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
                enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=PHONE)
            )
            auth = auth_grpc.AuthenticationServiceStub(channel)
            started = await auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id="alice", operation=transfer(), context=CONTEXT)
            )
            _, code = await asyncio.to_thread(sms_in, var / "sms.jsonl", started.challenge_id, 30)
            verified = await auth.VerifyChallenge(
                auth_pb.VerifyChallengeRequest(
                    challenge_id=started.challenge_id, code=code, operation=transfer(), context=CONTEXT
                )
            )
        assert ".k1." in started.challenge_id
        assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    listed = sesame_on(var, "keys", "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "sesame-otp-v1",
        "sesame-proof-v1",
        "sesame-journal-v1",
    ]

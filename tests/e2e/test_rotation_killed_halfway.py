"""A key ceremony killed halfway through SoftHSM's making of a key leaves nothing served (decision 0126).

SoftHSM writes a new key object's file again for each step of its making: the label and the template first,
the value and CKA_LOCAL in the last write. `sesame keys rotate` killed (SIGKILL) just before that write left
a key under the new label with no value: the next `sesame serve` stopped at boot (`HSM call failed:
KeySizeRange` for an OTP key, its public half without a point for a proof key), and so did every boot after a
second rotate, which went past the label. Each case kills the ceremony at the last write of one key object,
found by a run of the same ceremony on a copy of the token.
"""

from __future__ import annotations

import asyncio
import base64
import json
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
from sesame.clients.redis_server import url_of_running
from tests.e2e.helpers import CONTEXT, PHONE, transfer
from tests.support.outbox import sms_in
from tests.support.serve_process import sesame_on, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SETTINGS = {"SESAME_SEND_BUDGET_USER": "1000", "SESAME_SEND_BUDGET_PHONE": "1000"}
# strace -f writes the thread's id left-aligned in 5 columns and a space: "3390  ftruncate(" under 10000.
_WRITE = re.compile(r"^(?P<thread>\d+) +ftruncate\(\d+<(?P<path>[^>]+)>")


def _rotate(var: Path, kind: str, *tracing: str, ledger: bool = True) -> subprocess.CompletedProcess[str]:
    """`sesame keys rotate --kind kind` on `var`'s token, run by `tracing`; recorded in the key ledger of the
    server serving `var` unless not `ledger`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    env["SESAME_VAR_DIR"] = str(var)
    if ledger:
        env["SESAME_REDIS_URL"] = url_of_running(var / "redis")
    return subprocess.run(
        [*tracing, sys.executable, "-m", "sesame.server.cli", "keys", "rotate", "--kind", kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _last_writes(var: Path, kind: str, scratch: Path) -> list[int]:
    """For each key object the ceremony makes, in order, the number of SoftHSM's write of its file that
    finishes it (its last), counted as strace counts a thread's ftruncate calls: from a run on a copy.

    New objects are the files the copy did not hold before its run, never compared with the live token,
    which its server may be writing to.
    """
    copy = scratch / "var"
    shutil.copytree(var / "softhsm", copy / "softhsm")
    held = set((copy / "softhsm").rglob("*.object"))
    trace = scratch / "trace"
    done = _rotate(
        copy, kind, "strace", "-f", "-qq", "-y", "-e", "trace=ftruncate", "-o", str(trace), ledger=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    writes = [m for line in trace.read_text().splitlines() if (m := _WRITE.match(line))]
    made = [
        p for p in dict.fromkeys(m["path"] for m in writes) if p.endswith(".object") and Path(p) not in held
    ]
    (thread,) = {m["thread"] for m in writes if m["path"] in made}
    of_thread = [m["path"] for m in writes if m["thread"] == thread]
    return [max(n for n, path in enumerate(of_thread, 1) if path == object_file) for object_file in made]


def _killed_rotate(var: Path, kind: str, at: int) -> None:
    """`sesame keys rotate --kind kind` sent SIGKILL as SoftHSM is about to make its write number `at`."""
    inject = f"inject=ftruncate:signal=SIGKILL:when={at}"
    done = _rotate(var, kind, "strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=ftruncate", "-e", inject)
    assert done.returncode in {-9, 128 + 9}, (done.returncode, done.stderr[-2000:])


async def _verified(address: str, user_id: str, sms_file: Path) -> tuple[str, str]:
    """A challenge opened, its SMS's code verified: the challenge id and the proof."""
    async with grpc.aio.insecure_channel(address) as channel:
        await enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=PHONE)
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        started = await auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
        )
        _, code = await asyncio.to_thread(sms_in, sms_file, started.challenge_id, 30)
        verified = await auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=started.challenge_id, code=code, operation=transfer(), context=CONTEXT
            )
        )
    assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED
    return started.challenge_id, verified.proof


def _kid(jws: str) -> str:
    header = jws.split(".", maxsplit=1)[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _labels(var: Path) -> list[str]:
    listed = sesame_on(var, "keys", "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    return [line.split()[0] for line in listed.stdout.splitlines()]


@pytest.mark.parametrize(
    ("kind", "which"),
    [("otp", 0), ("proof", 0), ("proof", 1), ("journal", 1)],
    ids=["otp-secret", "proof-public-half", "proof-private-half", "journal-private-half"],
)
async def test_a_rotation_killed_before_its_key_is_whole_leaves_the_server_booting(
    tmp_path: Path, kind: str, which: int
) -> None:
    """Killed before SoftHSM's last write of one of its key objects, a rotate leaves a server that boots and
    serves on the previous key; a second rotate makes the version after the one cut short, which is served."""
    var = tmp_path / "var"
    sms_file = var / "sms.jsonl"
    serving = start_serve(var, settings=SETTINGS)
    try:
        at = _last_writes(var, kind, tmp_path / "scratch")[which]
        _killed_rotate(var, kind, at)
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)

    serving = start_serve(var, settings=SETTINGS)  # refused before: `HSM call failed: KeySizeRange`
    try:
        challenge_id, proof = await _verified(serving.address, "alice", sms_file)
        assert ".k1." in challenge_id
        assert _kid(proof) == "sesame-proof-v1"
        assert f"sesame-{kind}-v2" not in _labels(var)  # `keys list` lists keys that work
        again = _rotate(var, kind)
        assert again.returncode == 0, again.stderr[-2000:]
        assert again.stdout.splitlines()[0].endswith(f"key: sesame-{kind}-v3")
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)

    serving = start_serve(var, settings=SETTINGS)
    try:
        challenge_id, proof = await _verified(serving.address, "bob", sms_file)
        assert (".k3." in challenge_id) == (kind == "otp")
        assert _kid(proof) == ("sesame-proof-v3" if kind == "proof" else "sesame-proof-v1")
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    assert f"sesame-{kind}-v3" in _labels(var)

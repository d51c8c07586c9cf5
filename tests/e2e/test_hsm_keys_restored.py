"""Keys deleted from the token and restored from a backup while `sesame serve` runs: every worker sees them
again within seconds (decision 0087).

SoftHSM re-reads a token's directory only when the token's `generation` file changes. A restore in directory
order (`cp -a`, `tar x`) writes that file before the key objects: a worker that searches in between reads the
directory half restored, takes the new generation as read, and without a re-initialisation never sees the
keys copied after it (INTERNAL "a key is missing in the HSM" on every StartChallenge of that worker).
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.e2e.helpers import CONTEXT, PHONE, transfer
from tests.support.dev_token import on_dev_token
from tests.support.serve_process import ServeProcess, start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

WORKERS = 2
# A channel of its own per call: SO_REUSEPORT spreads connections over the workers, not calls.
_OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)

# What `pkcs11-tool --login --delete-object` does, for every secret and private key, in another process.
_DELETE_KEYS = """
import sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
token = pkcs11.lib(sys.argv[1]).get_token(token_label="sesame")
with token.open(rw=True, user_pin=sys.argv[2]) as session:
    for kind in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY):
        for key in list(session.get_objects({Attribute.CLASS: kind})):
            key.destroy()
"""


def _delete_keys(var: Path) -> None:
    on_dev_token(var, _DELETE_KEYS)


def _key_store_up_everywhere(metrics_port: int) -> bool:
    """Whether every worker's last key store probe (which runs the key self-test while it fails) passed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = re.search(r'^sesame_health_probe_up\{probe="key store"\} (\S+)$', text, re.MULTILINE)
    return found is not None and float(found.group(1)) == 1.0


def _failed_in_every_worker(serving: ServeProcess, since: int) -> bool:
    """Whether each worker logged its key store probe failing after the first `since` characters of output."""
    text = serving.output()[since:]
    failed = re.findall(r"health NOT_SERVING: key store \(KeyNotFound\).* worker=(\d+)", text)
    return {int(index) for index in failed} >= set(range(1, WORKERS + 1))


def _started(address: str, user_id: str) -> grpc.StatusCode:
    """One StartChallenge on a connection of its own; the status code of the answer."""
    with grpc.insecure_channel(address, options=_OWN_CONNECTION) as channel:
        try:
            auth_grpc.AuthenticationServiceStub(channel).StartChallenge(
                auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT),
                timeout=10,
            )
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call):
                return error.code()
            raise
    return grpc.StatusCode.OK


def test_every_worker_sees_the_keys_again_after_a_restore_it_searched_through(tmp_path: Path) -> None:
    """Keys deleted, then the token directory restored from its copy in directory order, generation file
    first, each worker searching meanwhile: every worker's keys work again within seconds.

    Before, each worker that searched between the generation file and the key objects kept answering
    KeyNotFound (INTERNAL) until something else changed the token, or for ever.
    """
    var = tmp_path / "var"
    serving = start_serve(var, settings={"SESAME_WORKERS": str(WORKERS)})
    try:
        assert serving.metrics_port is not None
        deadline = time.monotonic() + 120
        while len(re.findall(r"worker \d \(pid \d+\) serving", serving.output())) < WORKERS:
            assert time.monotonic() < deadline, serving.output()[-2000:]
            time.sleep(0.1)
        users = [f"restored-{n}" for n in range(8)]
        with grpc.insecure_channel(serving.address) as channel:
            for user_id in users:
                enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
                    enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=PHONE)
                )
        [token] = (var / "softhsm" / "tokens").iterdir()
        backup = tmp_path / "backup"
        shutil.copytree(token, backup)

        before = len(serving.output())
        _delete_keys(var)
        # Health runs the key self-test every round while it fails: each worker searched the token.
        assert until(lambda: _failed_in_every_worker(serving, before), 30), serving.output()[-3000:]

        # The restore, in the order a copy of the directory makes (the generation file first, as readdir
        # gives it here), slowed so that every worker's health round searches between the two steps.
        shutil.copy2(backup / "generation", token / "generation")
        time.sleep(3)
        for copied in backup.iterdir():
            if copied.name != "generation":
                shutil.copy2(copied, token / copied.name)
        restored = time.monotonic()

        assert until(lambda: _key_store_up_everywhere(serving.metrics_port), 15), (
            "a worker still lacks the restored keys: " + serving.output()[-3000:]
        )
        assert time.monotonic() - restored < 15
        assert [_started(serving.address, user_id) for user_id in users] == [grpc.StatusCode.OK] * len(users)
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=60)

"""`sesame serve` whose journal archive directory is, for a while, an empty one (the archive's volume not
mounted, its mount point empty; a path mistyped after a move): the journal goes on, but nothing is archived
there; once the archive is back, every block is drained into it, in order, and it verifies.

Found in a drill: the sealer drained the blocks after the archive's last (say 511 on) into the empty
directory, as if it were the archive, and Redis let them go. That directory did not verify (`BROKEN: block
511: does not follow the start`), and the real archive, back, lacked those blocks for good: the entries of
the challenges sealed meanwhile were in neither Redis nor the archive evidence reads.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.grpc.demo import demo_phone
from tests.support.serve_process import ServeProcess, journal_verify, start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REFUSED = "the journal is not being sealed: the archive holds no block"


def _archived(archive: Path) -> str:
    return "".join(segment.read_text() for segment in sorted(archive.glob("segment-*.jsonl")))


def _started(address: str, count: int) -> list[str]:
    """`count` users enrolled, each with a login challenge opened: the challenges' ids."""
    opened = []
    with grpc.insecure_channel(address) as channel:
        enrol, auth = enrol_grpc.EnrollmentServiceStub(channel), auth_grpc.AuthenticationServiceStub(channel)
        for _ in range(count):
            user_id = f"elsewhere-{os.urandom(6).hex()}"
            request = enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=demo_phone())
            enrol.EnrollUser(request, timeout=10)
            start = auth_pb.StartChallengeRequest(
                user_id=user_id, operation=op_pb.Operation(login=op_pb.Login())
            )
            opened.append(auth.StartChallenge(start, timeout=10).challenge_id)
    return opened


def _stop(serving: ServeProcess) -> None:
    serving.process.terminate()
    assert serving.process.wait(timeout=60) == 0, serving.output()


def test_an_empty_archive_directory_takes_no_block_and_the_archive_back_gets_them_all(tmp_path: Path) -> None:
    var, elsewhere = tmp_path / "var", tmp_path / "unmounted" / "journal"
    elsewhere.mkdir(parents=True)
    serving = start_serve(var)
    try:
        before = _started(serving.address, 3)
        assert until(lambda: all(c in _archived(var / "journal") for c in before), 20), serving.output()
    finally:
        _stop(serving)

    serving = start_serve(var, settings={"SESAME_JOURNAL_ARCHIVE_DIR": str(elsewhere)})
    try:
        meanwhile = _started(serving.address, 3)
        # Sealed (the sealer seals each second) and refused by the archive that is not one.
        assert until(lambda: REFUSED in serving.output(), 20), serving.output()
        time.sleep(2)
        assert _archived(elsewhere) == ""
    finally:
        _stop(serving)

    serving = start_serve(var)
    try:
        assert until(lambda: all(c in _archived(var / "journal") for c in meanwhile), 20), serving.output()
    finally:
        _stop(serving)
    done = journal_verify(var / "journal", var)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.startswith("verified ")

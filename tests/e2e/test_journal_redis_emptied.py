"""The embedded Redis restarted empty under `sesame serve` (its append-only file gone) while the journal
archive on disk goes on (decision 0084).

Before: the sealer found no seal in Redis and sealed the new entries from block 1 again; the drain took
those blocks for archived ones (their numbers were below the archive's last) and dropped them from Redis,
so every journal entry written after the restart was in neither Redis nor the archive, while the metrics
said sealed and archived and the log said nothing. Now the drain refuses a chain that forks from the
archive: it logs why, and the entries stay in Redis."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import grpc
import pytest
import redis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.support.serve_process import start_serve, wait_serving

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FORK = "Redis's journal forks from the archive"


def _archived_lines(var: Path) -> list[str]:
    return [
        line
        for segment in sorted((var / "journal").glob("segment-*.jsonl"))
        for line in segment.read_text().splitlines()
    ]


def _started(channel: grpc.Channel, user_id: str) -> str:
    """Enrol `user_id` and start a login challenge for it (retrying once over a Redis restart)."""
    enrol = enrol_grpc.EnrollmentServiceStub(channel)
    auth = auth_grpc.AuthenticationServiceStub(channel)
    for attempt in range(10):
        try:
            enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone="+33612345678"),
                timeout=5,
            )
            start = auth_pb.StartChallengeRequest(
                user_id=user_id, operation=op_pb.Operation(login=op_pb.Login())
            )
            return auth.StartChallenge(start, timeout=5).challenge_id
        except grpc.RpcError as error:
            if (
                not (isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.UNAVAILABLE)
                or attempt == 9
            ):
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _redis(var: Path) -> tuple[int, int]:
    """The embedded redis-server's pid and port."""
    pid = int((var / "redis" / "redis.pid").read_text())
    port = re.search(rb"127\.0\.0\.1:(\d+)", Path(f"/proc/{pid}/cmdline").read_bytes())
    assert port is not None
    return pid, int(port.group(1))


def test_after_redis_comes_back_empty_the_new_journal_is_kept_not_dropped_and_the_fork_is_logged(
    tmp_path: Path,
) -> None:
    """Flows archived, Redis killed and its append-only file removed (restarted empty by the supervisor),
    more flows: their journal entries are still in the shards' feeds, not archived, and the log says the
    fork."""
    var = tmp_path / "var"
    serving = start_serve(var)
    try:
        with grpc.insecure_channel(serving.address) as channel:
            for n in range(5):
                _started(channel, f"before-{n}")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                "before-4" in line for line in _archived_lines(var)
            ):
                time.sleep(0.2)
            archived = _archived_lines(var)
            assert archived, "nothing archived before the restart"
            pid, port = _redis(var)
            os.kill(pid, signal.SIGKILL)
            shutil.rmtree(var / "redis" / "appendonlydir")
            deadline = time.monotonic() + 20
            while (
                time.monotonic() < deadline and int((var / "redis" / "redis.pid").read_text() or pid) == pid
            ):
                time.sleep(0.1)
            wait_serving(serving.address, serving.process, limit=20)
            after = [_started(channel, f"after-{n}") for n in range(5)]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and FORK not in serving.output():
                time.sleep(0.2)
            time.sleep(2)  # a few more sealer steps: a drain that dropped them would have by now
        client = redis.Redis(host="127.0.0.1", port=port)
        # The shards' feeds are what the sealer seals and the drain archives, then drops: still there.
        unarchived = b"".join(
            b"".join(value for _, fields in client.xrange(feed) for value in fields.values())
            for feed in client.scan_iter(match="*:feed", _type="stream")
        )
        assert all(challenge.encode() in unarchived for challenge in after)
        assert FORK in serving.output()
        assert not any(challenge in "\n".join(_archived_lines(var)) for challenge in after)
        assert "Traceback" not in serving.output()
        assert _archived_lines(var)[: len(archived)] == archived
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)

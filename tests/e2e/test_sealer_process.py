"""The journal's sealer in a process of its own under `sesame serve` (decision 0085), not in the workers.

In a worker, the lease holder's sealing held its event loop in slices of 6-25 ms for 100-250 ms each second at
150 flows a second, and every call on that worker waited behind them. Now the supervisor runs one sealer
process beside the workers: it holds the lease, is started again when it dies (sealing what waited meanwhile),
and is drained after the workers.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import grpc
import pytest
import redis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from tests.support.serve_process import ServeProcess, start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LEASE = "sesame:{journal}:sealer"


def _archived(var: Path) -> str:
    return "".join(segment.read_text() for segment in sorted((var / "journal").glob("segment-*.jsonl")))


def _redis(var: Path) -> redis.Redis:
    """A client of the embedded redis-server under `var`."""
    pid = int((var / "redis" / "redis.pid").read_text())
    port = re.search(rb"127\.0\.0\.1:(\d+)", Path(f"/proc/{pid}/cmdline").read_bytes())
    assert port is not None
    return redis.Redis(host="127.0.0.1", port=int(port.group(1)))


def _started(channel: grpc.Channel, user_id: str) -> str:
    """Enrol `user_id` and open a login challenge for it; its id."""
    enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
        enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone="+33612345678"), timeout=10
    )
    start = auth_pb.StartChallengeRequest(user_id=user_id, operation=op_pb.Operation(login=op_pb.Login()))
    started = auth_grpc.AuthenticationServiceStub(channel).StartChallenge(start, timeout=10)
    challenge_id: str = started.challenge_id
    return challenge_id


def _lease_pid(var: Path) -> int | None:
    """The pid in the sealer's lease (`host:pid:random`), None while nobody holds it."""
    holder = _redis(var).get(LEASE)
    return None if holder is None else int(holder.decode().split(":")[1])


def _serve_two(var: Path) -> ServeProcess:
    serving = start_serve(var, settings={"SESAME_WORKERS": "2"})
    assert until(lambda: len(serving.workers()) == 2 and len(serving.sealers()) == 1, 60), serving.output()
    return serving


def test_the_sealer_process_holds_the_lease_and_seals_what_the_workers_journal(tmp_path: Path) -> None:
    """Two workers and one sealer process: the lease names the sealer, no worker, and the challenges the
    workers open reach the archive."""
    var = tmp_path / "var"
    serving = _serve_two(var)
    try:
        (sealer,) = serving.sealers()
        assert until(lambda: _lease_pid(var) == sealer, 10), serving.output()
        assert sealer not in serving.workers()
        with grpc.insecure_channel(serving.address) as channel:
            opened = [_started(channel, f"customer-{n}") for n in range(6)]
        assert until(lambda: all(c in _archived(var) for c in opened), 20), serving.output()
        assert _lease_pid(var) == sealer
        assert f"the sealer (pid {sealer}) sealing" in serving.output()
        assert "Traceback" not in serving.output()
    finally:
        serving.process.terminate()
        assert serving.process.wait(timeout=60) == 0


def test_a_killed_sealer_is_started_again_and_seals_what_was_journaled_meanwhile(tmp_path: Path) -> None:
    """SIGKILL of the sealer process: calls go on; a new sealer comes up, takes the lease once the dead
    one's lapsed, and archives the challenges opened while none ran."""
    var = tmp_path / "var"
    serving = _serve_two(var)
    try:
        (killed,) = serving.sealers()
        assert until(lambda: _lease_pid(var) == killed, 10), serving.output()
        os.kill(killed, signal.SIGKILL)
        with grpc.insecure_channel(serving.address) as channel:
            meanwhile = [_started(channel, f"customer-{n}") for n in range(4)]
        assert until(lambda: len(serving.sealers() - {killed}) == 1, 60), serving.output()
        (restarted,) = serving.sealers()
        # The dead sealer's lease lapses within its length (5 s), then the new one takes it.
        assert until(lambda: _lease_pid(var) == restarted, 20), serving.output()
        assert until(lambda: all(c in _archived(var) for c in meanwhile), 20), serving.output()
        assert f"the sealer (pid {killed}) exited" in serving.output()
    finally:
        serving.process.terminate()
        assert serving.process.wait(timeout=60) == 0


def test_sigterm_stops_the_sealer_after_the_workers_and_lets_the_lease_go(tmp_path: Path) -> None:
    """SIGTERM: the workers drain first, then the sealer stops and lets its lease go (a replica's sealer
    need not wait for it to lapse), before Redis stops."""
    var = tmp_path / "var"
    serving = _serve_two(var)
    (sealer,) = serving.sealers()
    assert until(lambda: _lease_pid(var) == sealer, 10), serving.output()

    serving.process.send_signal(signal.SIGTERM)

    assert serving.process.wait(timeout=60) == 0, serving.output()
    lines = serving.output().splitlines()
    stopped = [n for n, line in enumerate(lines) if "INFO sesame stopped" in line]
    sealer_stopped = [n for n in stopped if "worker=sealer" in lines[n]]
    workers_stopped = [n for n in stopped if re.search(r"worker=\d", lines[n])]
    assert len(sealer_stopped) == 1
    assert len(workers_stopped) == 2
    assert max(workers_stopped) < sealer_stopped[0]
    assert "the sealer's lease was not released" not in serving.output()
    assert "did not drain in time" not in serving.output()

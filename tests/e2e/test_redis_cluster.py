"""The real `sesame serve` on a real 3-primary Redis Cluster (docs/decisions/0047): it boots only on a
cluster that says `cluster_state:ok`, and runs every flow there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis
from redis.cluster import RedisCluster

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_keys import Keyspace
from sesame.server.journal_archive import JournalArchive
from tests.e2e.helpers import CONTEXT, PHONE, transfer
from tests.support.redis_cluster import LoopbackCluster
from tests.support.serve_process import ServeProcess, run_serve, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_serve_refuses_a_cluster_that_is_not_ok(tmp_path: Path) -> None:
    with LoopbackCluster(tmp_path / "cluster") as cluster:
        port = cluster.nodes[0].port
        first = redis.Redis(port=port)
        first.execute_command("CLUSTER", "DELSLOTS", 0)  # one slot no primary serves
        first.close()
        refused = run_serve(tmp_path / "var", {"SESAME_REDIS_URL": cluster.url})
    assert refused.returncode == 2
    assert f"Redis Cluster node 127.0.0.1:{port} says cluster_state:fail" in refused.stdout
    assert "HSM session open" not in refused.stdout  # checked before anything else


# --- The whole server on the cluster -------------------------------------------------------------------


@dataclass(frozen=True)
class OnCluster:
    """A `sesame serve` whose state is the session's cluster; its var/, address and environment."""

    serving: ServeProcess
    var: Path
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A `sesame` command with the server's settings (its token, archive and cluster)."""
        return subprocess.run(
            [sys.executable, "-m", "sesame.server.cli", *args],
            env={**os.environ, **self.env, "SESAME_VAR_DIR": str(self.var)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def on_cluster(tmp_path: Path, redis_cluster: LoopbackCluster) -> Iterator[OnCluster]:
    """The real `sesame serve` (as the e2e tests start it) on a flushed 3-primary cluster."""
    for node in redis_cluster.nodes:
        flushed = redis.Redis(port=node.port)
        flushed.flushall()
        flushed.close()
    settings = {"SESAME_REDIS_URL": redis_cluster.url, "SESAME_RESEND_SPACING_SECONDS": "0"}
    var = tmp_path / "var"
    serving = start_serve(var, settings=settings)
    try:
        yield OnCluster(serving, var, settings)
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)


def sealed_streams(var: Path, within: float = 30.0, *, streams: set[str]) -> set[str]:
    """The streams whose entries the archive holds, once it holds every one of `streams`."""
    archive = JournalArchive(var / "journal")
    deadline = time.monotonic() + within
    while True:
        found = {entry.stream for block in archive.blocks() for entry in block.entries}
        if streams <= found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_server_runs_on_the_cluster_and_refuses_start_by_name(
    on_cluster: OnCluster, redis_cluster: LoopbackCluster
) -> None:
    """Boot (key ledger, layout), enrolment and a suspension for users on every primary; the sealer's blocks
    across shards and `journal verify` on them. Start's step still takes the number's, caller's and global
    send budgets in their own slots (decision 0019; decision 0046 on the cluster-budgets branch moves them
    out): it is refused by name, INTERNAL, nothing queued."""
    sms_file = on_cluster.var / "sms.jsonl"
    router = RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    keys = Keyspace()
    users: dict[str, str] = {}  # primary: a user whose keys it serves
    for n in range(256):
        user_id = f"cluster-user-{n}"
        users.setdefault(router.get_node_from_key(keys.user(user_id)).name, user_id)
        if len(users) == len(redis_cluster.nodes):
            break
    with grpc.insecure_channel(on_cluster.serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        for user_id in users.values():
            enrolment = enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=PHONE)
            enrol.EnrollUser(enrolment, timeout=10)
            change = {"user_id": user_id, "actor": "back-office", "reason": "test"}
            enrol.SuspendUser(enrol_pb.SuspendUserRequest(request_id=f"s-{user_id}", **change), timeout=10)
            enrol.ReinstateUser(
                enrol_pb.ReinstateUserRequest(request_id=f"r-{user_id}", **change), timeout=10
            )
            assert enrol.GetUser(enrol_pb.GetUserRequest(user_id=user_id), timeout=10).user.user_id == user_id
        start = auth_pb.StartChallengeRequest(
            user_id=min(users.values()), operation=transfer(), context=CONTEXT
        )
        with pytest.raises(grpc.RpcError) as refused:
            auth.StartChallenge(start, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INTERNAL
    assert refused.value.details() == "server misconfigured"
    assert "ERROR sesame.clients Redis Cluster: script open_challenge touches keys in several hash slots" in (
        on_cluster.serving.output()
    )
    assert not sms_file.exists() or not sms_file.read_text(encoding="utf-8").strip()
    # The sealer seals every shard's feed together: the users' journals, on every primary, are archived.
    journals = {keys.user_journal(user_id) for user_id in users.values()}
    streams = sealed_streams(on_cluster.var, streams=journals)
    assert journals <= streams
    assert len({router.get_node_from_key(stream).name for stream in journals}) == len(redis_cluster.nodes)
    checked = on_cluster.cli("journal", "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr[-2000:]
    assert checked.stdout.startswith("verified ")
    router.close()

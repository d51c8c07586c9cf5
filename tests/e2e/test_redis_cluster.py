"""The real `sesame serve` on a real 3-primary Redis Cluster (docs/decisions/0047, with the shard layout of
0044 and the send budgets of 0046): it boots only on a cluster that says `cluster_state:ok`, and runs every
flow there."""

from __future__ import annotations

import json
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
from sesame.server.grpc.demo import code_in
from sesame.server.journal_archive import JournalArchive
from tests.e2e.helpers import CONTEXT, PHONE, transfer
from tests.support.console_sms import written
from tests.support.outbox import sms_in
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


def sms_lines(sms_file: Path, challenge_id: str) -> list[dict[str, str]]:
    """The console SMS written for `challenge_id` so far."""
    return [sms for sms in written(sms_file) if sms["challenge_id"] == challenge_id]


def sealed_streams(var: Path, within: float = 30.0, *, streams: set[str]) -> set[str]:
    """The streams whose entries the archive holds, once it holds every one of `streams`."""
    archive = JournalArchive(var / "journal")
    deadline = time.monotonic() + within
    while True:
        found = {entry.stream for block in archive.blocks() for entry in block.entries}
        if streams <= found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_every_flow_runs_on_the_cluster(on_cluster: OnCluster, redis_cluster: LoopbackCluster) -> None:
    """Enrolment, Start, a wrong code, Resend, Verify (VERIFIED, its proof checked by `sesame proof verify`)
    for users on every primary; the dispatcher's SMS in the console file; the sealer's blocks across shards
    (every primary's journals archived), `journal verify` passing on the archive; an evidence bundle whose
    seals check."""
    sms_file = on_cluster.var / "sms.jsonl"
    router = RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    keys = Keyspace()
    users = []
    for n in range(256):  # users until every primary holds one
        user_id = f"cluster-user-{n}"
        if router.get_node_from_key(keys.user(user_id)).name not in {
            router.get_node_from_key(keys.user(u)).name for u in users
        }:
            users.append(user_id)
        if len(users) == len(redis_cluster.nodes):
            break
    closed, proofs = [], []
    with grpc.insecure_channel(on_cluster.serving.address) as channel:
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        auth = auth_grpc.AuthenticationServiceStub(channel)
        for user_id in users:
            enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=PHONE), timeout=10
            )
            started = auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT),
                timeout=10,
            )
            challenge_id = started.challenge_id
            _, code = sms_in(sms_file, challenge_id)
            wrong_code = str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
            assert verified(auth, challenge_id, wrong_code).result == auth_pb.VERIFY_RESULT_WRONG_CODE
            auth.ResendChallenge(
                auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT), timeout=10
            )
            deadline = time.monotonic() + 10
            while len(sms_lines(sms_file, challenge_id)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [code_in(sms["text"]) for sms in sms_lines(sms_file, challenge_id)] == [code, code]
            answer = verified(auth, challenge_id, code)
            assert answer.result == auth_pb.VERIFY_RESULT_VERIFIED
            proof = auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id), timeout=10).proof
            # ECDSA signs afresh: the same header and claims, each signature checked by `sesame proof verify`.
            assert proof.rpartition(".")[0] == answer.proof.rpartition(".")[0] != ""
            closed.append(challenge_id)
            proofs.append(proof)
    # The sealer seals the journal of every shard together: the archive holds each challenge's journal.
    journals = {keys.challenge_journal(challenge_id) for challenge_id in closed}
    streams = sealed_streams(on_cluster.var, streams=journals)
    assert journals <= streams
    assert len({router.get_node_from_key(stream).name for stream in journals}) == len(redis_cluster.nodes)
    for proof in proofs:
        checked = on_cluster.cli("proof", "verify", proof, "--target", on_cluster.serving.address)
        assert checked.returncode == 0, checked.stdout + checked.stderr[-2000:]
    checked = on_cluster.cli("journal", "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr[-2000:]
    assert checked.stdout.startswith("verified ")
    bundle = on_cluster.cli("evidence", closed[0], "--target", on_cluster.serving.address)
    assert bundle.returncode == 0, bundle.stderr[-2000:]
    evidence = json.loads(bundle.stdout)
    assert evidence["journal_seals"]["valid"] is True
    router.close()


def verified(
    auth: auth_grpc.AuthenticationServiceStub, challenge_id: str, code: str
) -> auth_pb.VerifyChallengeResponse:
    """VerifyChallenge of the default transfer."""
    reply: auth_pb.VerifyChallengeResponse = auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=challenge_id, code=code, operation=transfer(), context=CONTEXT
        ),
        timeout=10,
    )
    return reply

"""The outbox sends again once a primary of the cluster failed over to its replica (decision 0162).

Found by an outside audit: with a primary SIGKILLed and its replica promoted within seconds, Starts answered
QUEUED and Verifies worked, but no SMS went out at all, not even the shards' on the living primaries, until
the dead node came back: the dispatcher's take from every shard is one redis-py cluster pipeline, which
answered the dead node's calls ConnectionError and never read the cluster's map of slots again.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
import redis
from redis.cluster import RedisCluster

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_keys import Keyspace
from tests.support.outbox import sms_in
from tests.support.redis_cluster import LoopbackCluster
from tests.support.serve_process import served, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USERS = 12
LOGIN = op_pb.Operation(login=op_pb.Login())


def _promoted(replica_port: int) -> bool:
    with redis.Redis(port=replica_port) as replica:
        return replica.info("replication").get("role") == "master"


def _started(auth: auth_grpc.AuthenticationServiceStub, user: str, within: float = 30.0) -> str:
    """A login started for `user`, its challenge id: tried again while the cluster settles (UNAVAILABLE), as
    a caller would, for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            request = auth_pb.StartChallengeRequest(user_id=user, operation=LOGIN)
            return str(auth.StartChallenge(request, timeout=10).challenge_id)
        except grpc.RpcError as error:
            settling = error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            if not settling or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_sms_go_out_again_after_a_primary_failed_over(tmp_path: Path) -> None:
    """Twelve users over the three primaries, a login each, sent; the first primary SIGKILLed, its replica
    promoted; a login each again (retried while UNAVAILABLE, as a caller would): every SMS sent within a
    minute, the failed shard's included (before: none, 45 s on)."""
    with LoopbackCluster(tmp_path / "cluster", replicated=True) as cluster:
        router = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        keys = Keyspace()
        users = [f"failover-{n}" for n in range(USERS)]
        dead_primary = cluster.nodes[0]
        on_dead = [u for u in users if router.get_node_from_key(keys.user(u)).port == dead_primary.port]
        router.close()
        assert on_dead, "no user on the primary that fails"
        var = tmp_path / "var"
        # An SMS taken as the cluster failed is claimed again 5 s on (30 by default), for a short test.
        settings = {
            "SESAME_REDIS_URL": cluster.url,
            "SESAME_WORKERS": "1",
            "SESAME_OUTBOX_CLAIM_IDLE_SECONDS": "5",
        }
        with served(var, settings) as serving, grpc.insecure_channel(serving.address) as channel:
            enrol = enrol_grpc.EnrollmentServiceStub(channel)
            auth = auth_grpc.AuthenticationServiceStub(channel)
            for n, user in enumerate(users):
                enrol.EnrollUser(
                    enrol_pb.EnrollUserRequest(
                        user_id=user, client_id="acme", secure_phone=f"+336123456{n:02d}"
                    ),
                    timeout=10,
                )
                sms_in(var / "sms.jsonl", _started(auth, user))
            dead_primary.kill()
            replica = cluster.replicas[0].port
            assert until(lambda: _promoted(replica), 30), "the replica was not promoted"
            for challenge_id in [_started(auth, user) for user in users]:
                sms_in(var / "sms.jsonl", challenge_id, within=60)

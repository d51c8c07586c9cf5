"""GetUserEvidence refuses a first page whose seals hold more journal entries than SESAME_EVIDENCE_MAX_LEAVES,
with INVALID_ARGUMENT naming the period, and answers a shorter one (decision 0145).

A first page carries every leaf of the seals covering the user's openings of the period: a worker built a
56 MB answer for a user's 10,000 challenges (+340 MB of memory while it did), and ten times that with busy
blocks. Here the bound is set at its floor, 1,000, over a history of 30 challenges each in a block of 51.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.grpc.evidence_client import ServerRefused
from sesame.server.grpc.user_evidence_client import fetch_user_evidence
from tests.support.evidence_history import History, build
from tests.support.serve_process import served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USER = "u-thirty"


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def test_a_first_page_past_the_bound_is_refused_and_a_shorter_period_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith(("SESAME_", "SOFTHSM2_"))]:
        monkeypatch.delenv(name)
    history = History(USER, 30, 50, datetime.now(UTC) - timedelta(days=30))
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        build(tmp_path / "var", redis_server.url, history)
        settings = {"SESAME_REDIS_URL": redis_server.url, "SESAME_EVIDENCE_MAX_LEAVES": "1000"}
        with served(tmp_path / "var", settings) as serving, grpc.insecure_channel(serving.address) as channel:
            stub = evidence_grpc.EvidenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetUserEvidence(evidence_pb.GetUserEvidenceRequest(user_id=USER), timeout=60)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "the period's seals hold more than 1000 journal entries" in refused.value.details()
            assert "ask a shorter period" in refused.value.details()
            # What the back office sees of it in `sesame evidence --user`.
            with pytest.raises(ServerRefused, match=r"INVALID_ARGUMENT.*ask a shorter period"):
                fetch_user_evidence(serving.address, USER)
            # Ten of the thirty (their openings, the one after, the lifecycle: 612 entries in 12 blocks).
            shorter = evidence_pb.GetUserEvidenceRequest(
                user_id=USER, since=_stamp(history.at(10)), until=_stamp(history.at(20))
            )
            reply = stub.GetUserEvidence(shorter, timeout=60)
            assert [m.challenge_id for m in reply.challenges] == [f"c{n:06d}" for n in range(10, 20)]
            assert reply.seals_json

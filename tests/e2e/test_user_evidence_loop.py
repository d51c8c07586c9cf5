"""GetUserEvidence over a user with thousands of challenges, each sealed in its own block, holds no worker's
event loop for a second (decision 0143).

The state is built as the sealer builds it (tests/support/evidence_history.py). Then the first page is
asked, and the worker's loop lag (0052) and the supervisor's watchdog (0138) say how long the loop was held:
before, 1 to 2.5 s with 10,000 challenges (the seals' hundreds of thousands of leaves read for the extent and
written as JSON on the loop), 0.25 to 0.5 s after. Half that history is built here, and half the bound asked:
no tick past 0.5 s (the build, a sealer step per challenge, took most of the test's 300 s at 10,000 on a
quiet CI machine). And `sesame evidence --user`'s client reads it whole (decision 0144).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.grpc.user_evidence_client import fetch_user_evidence
from tests.support.evidence_history import History, build
from tests.support.serve_process import lag_buckets, served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHALLENGES = 5_000  # a user's challenges in the retention window: half a bank's extreme
BESIDE = 50  # other users' openings in each of their blocks
USER = "u-many"


def test_a_long_history_holds_no_loop_for_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("SESAME_", "SOFTHSM2_"))]:
        monkeypatch.delenv(name)
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        build(
            tmp_path / "var",
            redis_server.url,
            History(USER, CHALLENGES, BESIDE, datetime.now(UTC) - timedelta(days=390)),
        )
        settings = {"SESAME_REDIS_URL": redis_server.url, "SESAME_WORKER_HANG_SECONDS": "5"}
        with served(tmp_path / "var", settings) as serving:
            port = serving.metrics_port
            assert port is not None
            time.sleep(2)
            before = lag_buckets(port)
            options = [("grpc.max_receive_message_length", 1 << 30)]
            with grpc.insecure_channel(serving.address, options=options) as channel:
                reply = evidence_grpc.EvidenceServiceStub(channel).GetUserEvidence(
                    evidence_pb.GetUserEvidenceRequest(user_id=USER), timeout=120
                )
            assert len(reply.openings) == CHALLENGES
            assert len(reply.challenges) == 100
            time.sleep(1.5)  # the ticks after the call are counted
            after = lag_buckets(port)
            added = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
            # Every tick of the call came at most half a second late: none past the 0.5 s bucket.
            assert added[0.5] == added[float("inf")] > 0, added
            assert "gave no sign of life" not in serving.output()
            # `sesame evidence --user` reads the same first page (28 MB here, 56 MB at 10,000 challenges) and
            # the pages after it: it read 4 MiB at most, in 10 s (decision 0144).
            found = fetch_user_evidence(serving.address, USER)
            assert len(found.challenges) == CHALLENGES
            assert len(json.loads(found.seals_json)["seals"]) > CHALLENGES // 2

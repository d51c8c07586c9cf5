"""GetUserEvidence over a user with thousands of challenges, each sealed in its own block, holds no worker's
event loop for a second (decision 0143).

The state is built as the sealer builds it: each challenge's opening indexed (with other users' openings
beside it in the block) and sealed, one block a step, by the same sealer a worker runs, into the archive of
the `sesame serve` started after. Then the first page is asked, and the worker's loop lag (0052) and the
supervisor's watchdog (0138) say how long the loop was held: before, 1 to 2.5 s (the seals' hundreds of
thousands of leaves read for the extent and written as JSON on the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.app import _opened, journal_sealer
from sesame.server.config import Settings
from sesame.server.domain.evidence_index import EvidenceMatch, IndexedOpening
from sesame.server.journal_archive import JournalArchive
from sesame.server.metrics import SealerGauges
from sesame.server.sealer import SealerTiming
from sesame.server.serve import _ready_keys
from tests.support.serve_process import lag_buckets, served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHALLENGES = 10_000  # a user's challenges in the retention window: a bank's extreme
BESIDE = 50  # other users' openings in each of their blocks
USER = "u-many"


async def _build(var: Path, redis_url: str) -> None:
    """CHALLENGES openings of USER, each in a block of its own with BESIDE others, sealed and archived."""
    settings = Settings.from_env({"SESAME_VAR_DIR": str(var), "SESAME_REDIS_URL": redis_url})
    await _ready_keys(settings, redis_url)
    async with contextlib.AsyncExitStack() as stack:
        keys, store, _ = await _opened(settings, stack, warn_copyable=False)
        archive = JournalArchive(settings.journal_archive_dir)
        sealer = journal_sealer(
            store, keys, archive, SealerGauges(CollectorRegistry()), SealerTiming(step=timedelta(0))
        )
        index, now = store.evidence_index(), datetime.now(UTC)
        start = now - timedelta(days=390)
        for n in range(CHALLENGES):
            at = start + timedelta(minutes=50 * n)
            openings = [IndexedOpening(USER, EvidenceMatch(f"c{n:06d}", at, f"tx{n}"))] + [
                IndexedOpening(f"u-{k}", EvidenceMatch(f"o{n:06d}-{k}", at, "")) for k in range(BESIDE)
            ]
            await index.index(openings, now, timedelta(days=396))
            await sealer.step()
        await sealer.step()
        await store.close()


def _build_apart(var: Path, redis_url: str) -> None:
    """`_build` in a process of its own: SoftHSM is loaded once per process, for one token directory, and the
    test's process may have loaded it already for another test's token."""
    asyncio.run(_build(var, redis_url))


def test_a_long_history_holds_no_loop_for_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("SESAME_", "SOFTHSM2_"))]:
        monkeypatch.delenv(name)
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        builder = multiprocessing.get_context("spawn").Process(
            target=_build_apart, args=(tmp_path / "var", redis_server.url)
        )
        builder.start()
        builder.join(600)
        assert builder.exitcode == 0
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
            # Every tick of the call came at most a second late: none past the 1 s bucket.
            assert added[1.0] == added[float("inf")] > 0, added
            assert "gave no sign of life" not in serving.output()

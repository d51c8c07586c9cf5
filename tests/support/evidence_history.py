"""A user's long history of sealed, archived openings, built as the sealer builds it, for GetUserEvidence's
tests (decisions 0143, 0145).

Each of the user's challenges is indexed with `beside` other users' openings and sealed in a block of its own,
one sealer step each, into the archive of the `sesame serve` started after on the same var/ and Redis. Built
in a process of its own: SoftHSM is loaded once per process, for one token directory, and the test's process
may have loaded it already for another test's token.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from sesame.server.app import _opened, journal_sealer
from sesame.server.config import Settings
from sesame.server.domain.evidence_index import EvidenceMatch, IndexedOpening
from sesame.server.journal_archive import JournalArchive
from sesame.server.metrics import SealerGauges
from sesame.server.sealer import SealerTiming
from sesame.server.serve import _ready_keys

EVERY = timedelta(minutes=50)  # between two of the user's challenges


@dataclass(frozen=True, slots=True)
class History:
    """`challenges` openings of `user` from `start`, one every EVERY, each in a block with `beside` others."""

    user: str
    challenges: int
    beside: int
    start: datetime

    def at(self, n: int) -> datetime:
        """When the user's n-th challenge (from 0) was opened."""
        return self.start + EVERY * n


def build(var: Path, redis_url: str, history: History) -> None:
    """Build `history` into var/'s archive and Redis, in a process of its own."""
    builder = multiprocessing.get_context("spawn").Process(target=_built, args=(var, redis_url, history))
    builder.start()
    builder.join(600)
    assert builder.exitcode == 0


def _built(var: Path, redis_url: str, history: History) -> None:
    asyncio.run(_build(var, redis_url, history))


async def _build(var: Path, redis_url: str, history: History) -> None:
    settings = Settings.from_env({"SESAME_VAR_DIR": str(var), "SESAME_REDIS_URL": redis_url})
    await _ready_keys(settings, redis_url)
    async with contextlib.AsyncExitStack() as stack:
        keys, store, _ = await _opened(settings, stack, warn_copyable=False)
        archive = JournalArchive(settings.journal_archive_dir)
        sealer = journal_sealer(
            store, keys, archive, SealerGauges(CollectorRegistry()), SealerTiming(step=timedelta(0))
        )
        index, now = store.evidence_index(), datetime.now(UTC)
        for n in range(history.challenges):
            at = history.at(n)
            openings = [IndexedOpening(history.user, EvidenceMatch(f"c{n:06d}", at, f"tx{n}"))] + [
                IndexedOpening(f"u-{k}", EvidenceMatch(f"o{n:06d}-{k}", at, ""))
                for k in range(history.beside)
            ]
            await index.index(openings, now, timedelta(days=396))
            await sealer.step()
        await sealer.step()
        await store.close()

"""A backlog larger than one step's share is sealed step after step at once, not a step per interval
(decision 0071).

A step seals block after block for its share of time (half the lease), so that the next step renews the lease
in time. `run` then waited its whole interval even when more entries waited: under a sustained load the
sealer fell seconds behind and its backlog grew. Here a step's share is one block and the interval a minute:
a backlog of several blocks waits a minute per block unless the next step follows at once. Real Redis and
SoftHSM.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server import sealer as sealer_module
from sesame.server.domain.journal_seal import Seal
from sesame.server.journal_archive import JournalArchive
from sesame.server.sealer import ENTRIES_AT_ONCE, Sealer, SealerTiming
from tests.integration.test_sealer_yields import CHALLENGES, _busy_second

pytestmark = pytest.mark.integration

# One block a step, and a minute between steps unless a backlog waits: each step its own lease renewal.
ONE_BLOCK_A_STEP = SealerTiming(interval=timedelta(minutes=1), lease=timedelta(seconds=30), step=timedelta(0))
WITHIN = 30.0  # seconds for the whole backlog: a step per interval would take a minute per block


class Steps:
    """Counts the sealer's steps, as `run` calls them."""

    def __init__(self, sealer: Sealer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real: Callable[[], Awaitable[Seal | None]] = sealer.step

        async def counted() -> Seal | None:
            self.count += 1
            return await real()

        monkeypatch.setattr(sealer, "step", counted)


async def _waiting(store: RedisState, client: aioredis.Redis) -> int:
    return sum([await client.xlen(feed) for feed in store.keys.journal_feeds()])


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WITHIN
    while not await condition():
        assert time.monotonic() < deadline, "the backlog was not sealed in time"
        await asyncio.sleep(0.05)


async def test_a_backlog_of_many_steps_is_sealed_at_once_then_the_sealer_waits_its_interval(
    redis_store: RedisState,
    redis_client: aioredis.Redis,
    keystore: Pkcs11KeyStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several blocks waiting and one block a step: `run` seals and archives them all, one step after the
    other, well within one interval; with nothing left it waits its interval (no step in the next 0.5 s)."""
    monkeypatch.setattr(sealer_module, "BLOCK_ENTRIES", ENTRIES_AT_ONCE)
    await _busy_second(redis_store)
    archive = JournalArchive(tmp_path / "archive")
    sealer = Sealer(redis_store.sealed_journal(), keystore, archive, ONE_BLOCK_A_STEP, holder="one")
    steps = Steps(sealer, monkeypatch)
    stop = asyncio.Event()
    task = asyncio.create_task(sealer.run(stop))
    try:

        async def drained() -> bool:
            return await _waiting(redis_store, redis_client) == 0

        await _until(drained)
        settled = steps.count
        await asyncio.sleep(0.5)  # an empty feed: no step before the interval
        assert steps.count == settled
    finally:
        stop.set()
        await task
    counts = [block.seal.block.count for block in archive.blocks()]
    assert sum(counts) > CHALLENGES
    assert max(counts) == ENTRIES_AT_ONCE
    assert len(counts) > CHALLENGES // ENTRIES_AT_ONCE  # more blocks, so more steps, than one step's share
    assert len(counts) <= settled <= len(counts) + 1  # a step a block (and one that found nothing)


async def test_a_backlog_whose_archive_fails_waits_the_interval_between_steps(
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog waits but the step failed (the archive's disk): the next step comes after the interval, not
    at once: a failing sealer does not spin."""
    monkeypatch.setattr(sealer_module, "BLOCK_ENTRIES", ENTRIES_AT_ONCE)
    await _busy_second(redis_store)
    archive = JournalArchive(tmp_path / "archive")
    archive.path.write_text("not a directory")  # the archive's disk fails
    sealer = Sealer(redis_store.sealed_journal(), keystore, archive, ONE_BLOCK_A_STEP, holder="one")
    steps = Steps(sealer, monkeypatch)
    stop = asyncio.Event()
    task = asyncio.create_task(sealer.run(stop))
    try:
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await task
    assert sealer.behind  # a backlog waited
    assert steps.count == 1

"""A sealer's pass over a busy second's entries lets the worker's other calls run (decision 0052).

A worker serves every call on the loop its sealer runs on: a block's hundreds of entries hashed, or looked
at for the evidence index, in one go held every call in flight 10-40 ms. Each is done a slice at a time,
with a yield to the loop between slices. Real Redis and SoftHSM; the hashing and the index's look are
watched (not replaced) to see what else ran between two entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import pytest

from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server import sealer as sealer_module
from sesame.server.domain import journal_seal
from sesame.server.domain.evidence_index import IndexedOpening, indexed_opening
from sesame.server.domain.model import RequestContext
from sesame.server.journal_archive import JournalArchive
from sesame.server.sealer import ENTRIES_AT_ONCE, Sealer
from tests.factories import a_challenge, its_user_enrolled
from tests.integration.test_journal_sealer import STEADY
from tests.support.shards import one_shard

pytestmark = pytest.mark.integration

CHALLENGES = 3 * ENTRIES_AT_ONCE  # one entry each in its challenge's journal (and the user's enrolment)


class Ticker:
    """Another call on the same loop: it counts each time the loop lets it run."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)

    def __enter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def _busy_second(store: RedisState) -> None:
    """CHALLENGES opened at once in u-1's shard, over users of it (a user holds at most 64 open: 0095)."""
    now = datetime.now(UTC)
    names = one_shard("u-1", CHALLENGES // 32)
    for nonce in range(CHALLENGES):
        challenge = a_challenge(now, nonce=nonce.to_bytes(16, "big"), user_id=names[nonce % len(names)])
        await store.challenges.open_challenge(await its_user_enrolled(store, challenge), RequestContext())


async def test_a_large_block_is_hashed_and_indexed_a_slice_at_a_time(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the sealer closes and drains a block of several slices of entries, another coroutine runs between
    slices: the ticks seen at each entry's hashing, and at each entry's look for the index, take as many
    different values as there are slices (one value: the loop was held from the first entry to the last)."""
    await _busy_second(redis_store)
    sealer = Sealer(
        redis_store.sealed_journal(),
        keystore,
        JournalArchive(tmp_path / "archive"),
        STEADY,
        holder="one",
        index=redis_store.evidence_index(),
    )
    hashed: list[int] = []
    indexed: list[int] = []
    with Ticker() as ticker:
        hash_leaf, look = journal_seal.leaf_hash, indexed_opening

        def hashing(stream: str, fields: Mapping[str, str]) -> str:
            hashed.append(ticker.ticks)
            return hash_leaf(stream, fields)

        def looking(fields: Mapping[str, str]) -> IndexedOpening | None:
            indexed.append(ticker.ticks)
            return look(fields)

        monkeypatch.setattr(journal_seal, "leaf_hash", hashing)
        monkeypatch.setattr(sealer_module, "indexed_opening", looking)
        sealed = await sealer.step()
    assert sealed is not None
    assert sealed.block.count == len(hashed) > CHALLENGES
    assert len(set(hashed)) == _slices(hashed) > 1
    assert len(set(indexed)) == _slices(indexed) > 1


def _slices(seen: list[int]) -> int:
    return -(-len(seen) // ENTRIES_AT_ONCE)


async def test_a_backlog_is_sealed_in_blocks_of_at_most_the_bound_in_one_step(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More entries waiting than a block holds: one step seals them all, in full blocks and a last one, each
    archived in the chain (a worker holds one block's entries at a time, not the backlog's)."""
    monkeypatch.setattr(sealer_module, "BLOCK_ENTRIES", ENTRIES_AT_ONCE)
    await _busy_second(redis_store)
    archive = JournalArchive(tmp_path / "archive")
    sealer = Sealer(redis_store.sealed_journal(), keystore, archive, STEADY, holder="one")
    last = await sealer.step()
    assert last is not None
    seals = [block.seal for block in archive.blocks()]
    counts = [seal.block.count for seal in seals]
    assert sum(counts) > CHALLENGES
    assert max(counts) == ENTRIES_AT_ONCE
    assert len(counts) > CHALLENGES // ENTRIES_AT_ONCE
    assert seals[-1] == last
    assert await sealer.step() is None  # nothing left waiting

"""The sealer's clock (decision 0104): its blocks' times, the archive's pruning and the evidence index's trim
are read on it; out of step with Redis's, it seals nothing and lets the lease go to a sealer in step.

A sealer whose host clock read a year ahead (a lost RTC, a mistyped date) pruned the archive's segments and
trimmed the users' evidence index by the 13-month retention as of that date: eleven months of evidence gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server import journal_archive
from sesame.server.clock_watch import ClockWatch
from sesame.server.journal_archive import JournalArchive
from sesame.server.sealer import Sealer
from tests.fakes.clock import ShiftedClock
from tests.integration.test_journal_sealer import STEADY, journal_something, sealer

pytestmark = pytest.mark.integration

A_YEAR = timedelta(days=400)


@pytest.fixture
def archive(tmp_path: Path) -> JournalArchive:
    return JournalArchive(tmp_path / "archive")


def watched(
    store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive, clock: ShiftedClock
) -> Sealer:
    """A sealer on `clock`, watched against Redis's."""
    return Sealer(
        store.sealed_journal(),
        keystore,
        archive,
        STEADY,
        holder="watched",
        index=store.evidence_index(),
        clock=clock,
        clock_watch=ClockWatch(clock, store),
    )


async def test_a_sealer_out_of_step_seals_nothing_and_lets_the_lease_go(
    redis_store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive
) -> None:
    clock = ShiftedClock()
    ahead = watched(redis_store, keystore, archive, clock)
    await journal_something(redis_store)
    first = await ahead.step()
    assert first is not None
    assert ahead.holding
    clock.skew(A_YEAR)
    await journal_something(redis_store, nonce=1)
    assert await ahead.step() is None
    assert not ahead.holding
    assert [block.seal for block in archive.blocks()] == [first]
    # The lease was let go, not left to lapse: a sealer in step takes it at its first step.
    second = await sealer(redis_store, keystore, archive, "in step").step()
    assert second is not None
    assert second.block.number == 2
    assert abs(datetime.fromisoformat(second.block.at) - datetime.fromisoformat(first.block.at)) < timedelta(
        minutes=1
    )


async def test_a_sealer_stamps_its_blocks_with_its_clock(
    redis_store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive
) -> None:
    """What the watch guards: the block's time is the sealer's clock (here an hour on, for everyone)."""
    clock = ShiftedClock()
    clock.advance(timedelta(hours=1))
    await journal_something(redis_store)
    seal = await Sealer(redis_store.sealed_journal(), keystore, archive, STEADY, clock=clock).step()
    assert seal is not None
    assert abs(datetime.fromisoformat(seal.block.at) - clock.now()) < timedelta(minutes=1)


@pytest.mark.parametrize("watching", [True, False])
async def test_a_sealer_a_year_ahead_prunes_no_evidence_when_watched(
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
    monkeypatch: pytest.MonkeyPatch,
    watching: bool,  # noqa: FBT001 (a parameter)
) -> None:
    """Two archive segments of today; a new sealer (its first step prunes) whose clock reads a year ahead:
    unwatched, it deletes the older segment as past the 13-month retention; watched, it keeps both."""
    monkeypatch.setattr(journal_archive, "SEGMENT_BLOCKS", 1)
    today = sealer(redis_store, keystore, archive, "today")
    for nonce in range(2):
        await journal_something(redis_store, nonce)
        assert await today.step() is not None
    await today._let_go()  # as at its clean stop: the lease free for the next
    segments = sorted(archive.path.glob("segment-*.jsonl"))
    assert len(segments) == 2
    clock = ShiftedClock()
    clock.skew(A_YEAR)
    ahead = (
        watched(redis_store, keystore, archive, clock)
        if watching
        else Sealer(redis_store.sealed_journal(), keystore, archive, STEADY, holder="ahead", clock=clock)
    )
    await journal_something(redis_store, 2)
    await ahead.step()
    kept = sorted(archive.path.glob("segment-*.jsonl"))
    assert (kept == segments) is watching

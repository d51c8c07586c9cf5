"""The sealer over real Redis and SoftHSM: signed blocks in a chain, one sealer at a time (decision 0027)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_journal import Lease, SealLost, feed_entries
from sesame.clients.redis_keys import FEED_RESIDUES
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server import journal_archive
from sesame.server.domain import proof
from sesame.server.domain.journal_seal import GENESIS, Seal, id_key
from sesame.server.domain.model import RequestContext
from sesame.server.journal_archive import ArchiveRefused, JournalArchive
from sesame.server.journal_check import check_stream
from sesame.server.journal_reads import ArchivedJournals
from sesame.server.metrics import Metrics
from sesame.server.sealer import CLOSED_KEPT, Sealer, SealerTiming
from tests.factories import a_challenge, its_user_enrolled

pytestmark = pytest.mark.integration

# SHORT for the tests of a lease that expires; STEADY for the others: a 300 ms lease could lapse between a
# step's taking it and its writing on a loaded machine, and the step then wrote nothing (seen in make test).
SHORT = SealerTiming(interval=timedelta(milliseconds=50), lease=timedelta(milliseconds=300))
STEADY = SealerTiming(interval=timedelta(milliseconds=50), lease=timedelta(seconds=30))


async def journal_something(store: RedisState, nonce: int = 0) -> str:
    """Enrol a user and open a challenge: two journal entries, in two streams."""
    now = datetime.now(UTC)
    challenge = await its_user_enrolled(store, a_challenge(now, nonce=bytes([nonce]) * 16))
    await store.challenges.open_challenge(challenge, RequestContext())
    return challenge.challenge_id


@pytest.fixture
def archive(tmp_path: Path) -> JournalArchive:
    return JournalArchive(tmp_path / "archive")


def sealer(
    store: RedisState,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
    holder: str,
    timing: SealerTiming = STEADY,
) -> Sealer:
    return Sealer(store.sealed_journal(), keystore, archive, timing, holder=holder)


async def test_blocks_are_signed_chained_archived_and_leave_redis(
    redis_store: RedisState,
    redis_client: aioredis.Redis,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
) -> None:
    challenge_id = await journal_something(redis_store)
    one = sealer(redis_store, keystore, archive, "one")
    first = await one.step()
    assert first is not None
    assert (first.block.number, first.block.prev, first.block.count) == (1, GENESIS, 2)
    assert first.block.kid.startswith("sesame-journal-v")
    # Archived, then let go by Redis: the feed is empty, only the last seal stays (the next one follows it).
    assert [await redis_client.xlen(feed) for feed in redis_store.keys.journal_feeds()] == [0] * 16
    assert [b.seal for b in archive.blocks()] == [first]
    assert await one.step() is None  # nothing waits: no block
    await redis_store.challenges.cancel_challenge(challenge_id, datetime.now(UTC), RequestContext())
    second = await one.step()
    assert second is not None
    assert (second.block.number, second.block.prev) == (2, first.block.digest())
    journal = redis_store.sealed_journal()
    stream = redis_store.keys.challenge_journal(challenge_id)
    # The cancelled challenge's journal left Redis once archived (decision 0037): read from the archive.
    assert await redis_client.exists(stream) == 0
    entries = [fields for _, fields in await ArchivedJournals(journal, archive).entries(stream)]
    assert [e["seq"] for e in entries] == ["1", "2"]
    jwks = proof.jwk_set(await keystore.journal_public_keys())
    assert await journal.seals_from("0-0") == []
    assert await journal.last_seal() == Seal(second.block, second.signature, ())  # its head only
    assert [b.seal for b in archive.blocks()] == [first, second]
    assert [e.fields for b in archive.blocks() for e in b.entries if e.stream == stream] == entries
    checked = check_stream(stream, entries, archive.seals_from("0-0"), jwks)
    assert (checked.valid, checked.sealed, checked.seals) == (True, 2, 2)


async def test_a_step_seals_every_entry_appended_before_it_even_in_its_own_millisecond(
    redis_store: RedisState, redis_client: aioredis.Redis, keystore: Pkcs11KeyStore, tmp_path: Path
) -> None:
    """A user and its challenge share a shard s: their entries may be (T, s) and (T, s + 4096). A read of an
    idle shard c < s in that same millisecond once moved its frontier to (T, c), whose next entry could be
    (T, c + 4096), and the second entry waited for the next step: 17 first blocks of one entry in 300 tries.
    The idle frontier now stands high in its millisecond (read_feed.lua)."""
    partial = []
    for nonce in range(60):
        await redis_client.flushall()
        await journal_something(redis_store, nonce)
        first = await sealer(redis_store, keystore, JournalArchive(tmp_path / str(nonce)), "one").step()
        assert first is not None
        if first.block.count != 2:
            partial.append((first.block.first, first.block.last))
    assert partial == []


async def test_an_idle_feed_read_stands_above_every_id_of_its_millisecond(
    redis_store: RedisState, redis_client: aioredis.Redis
) -> None:
    """Its frontier is the millisecond's sequence 2^20 residues up, in its own residue; the shard's next entry
    goes above it (in that millisecond as in a later one), in the shard's residue."""
    journal = redis_store.sealed_journal()
    before = int((await redis_client.time())[0]) * 1000
    await journal.unsealed("")
    after = int((await redis_client.time())[0]) * 1000 + 1000
    frontiers = []
    for shard, feed in enumerate(redis_store.keys.journal_feeds()):
        ms, seq = id_key((await redis_client.xinfo_stream(feed))["last-generated-id"].decode())
        assert before <= ms <= after
        assert seq == 2**20 * FEED_RESIDUES + shard
        frontiers.append((ms, seq))
    challenge_id = await journal_something(redis_store)
    shard = redis_store.keys.shard_of_challenge(challenge_id)
    entries = await redis_client.xrange(redis_store.keys.challenge_journal(challenge_id))
    for entry_id, _ in entries:
        assert id_key(entry_id.decode()) > frontiers[shard]
        assert id_key(entry_id.decode())[1] % FEED_RESIDUES == shard


async def test_a_block_whose_entries_changed_before_the_archive_is_not_archived(
    redis_store: RedisState,
    redis_client: aioredis.Redis,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
) -> None:
    """Sealed, then an entry edited in the feed before the drain: the archive refuses it, Redis keeps it."""
    await journal_something(redis_store, 6)
    one = sealer(redis_store, keystore, archive, "one")
    assert await one.step() is not None
    assert archive.last_block() is not None
    await journal_something(redis_store, 7)
    journal = redis_store.sealed_journal()
    assert await one.seal() is not None  # sealed, not drained yet
    (feed,) = [feed for feed in redis_store.keys.journal_feeds() if await redis_client.xlen(feed)]
    ((entry_id, fields),) = await redis_client.xrange(feed)
    await redis_client.delete(feed)
    await redis_client.xadd(feed, {**fields, b"outcome": b"forged"}, id=entry_id)
    with pytest.raises(ArchiveRefused, match="are not the entries it seals"):
        await one.drain()
    assert [b.seal.block.number for b in archive.blocks()] == [1]
    assert [s.block.number for s in await journal.seals_from("0-0")] == [2]


async def test_a_block_whose_seal_changed_before_the_archive_is_not_archived(
    redis_store: RedisState,
    redis_client: aioredis.Redis,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
) -> None:
    """Sealed, then its seal's leaves edited in Redis before the drain (the entries untouched): the sealer
    does not take it for the seal it kept (0071 compares the stored fields); the archive refuses it."""
    await journal_something(redis_store, 12)
    one = sealer(redis_store, keystore, archive, "one")
    assert await redis_store.sealed_journal().lease("one", STEADY.lease) is Lease.TAKEN
    sealed = await one.seal()
    assert sealed is not None
    seals = redis_store.keys.journal_seals()
    ((seal_id, fields),) = await redis_client.xrange(seals)
    leaves = [[stream, seq, "0" * 64] for stream, seq, _ in json.loads(fields[b"leaves"])]
    await redis_client.delete(seals)
    await redis_client.xadd(seals, {**fields, b"leaves": json.dumps(leaves).encode()}, id=seal_id)
    with pytest.raises(ArchiveRefused, match="are not the entries it seals"):
        await one.drain()
    assert list(archive.blocks()) == []


async def test_a_block_is_hashed_once_by_its_sealer_and_again_when_another_sealer_drains_it(
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sealer archives the blocks it closed against the leaves it computed (decision 0048); a block closed
    by a sealer that stopped before its drain is hashed again, and checked, by the one that drains it."""
    hashed: list[str] = []
    real = journal_archive.leaf_hash

    def counted(stream: str, fields: Mapping[str, str]) -> str:
        hashed.append(stream)
        return real(stream, fields)

    monkeypatch.setattr(journal_archive, "leaf_hash", counted)
    await journal_something(redis_store, 10)
    one = sealer(redis_store, keystore, archive, "one")
    first = await one.step()
    assert first is not None
    assert hashed == []  # archived, not hashed again
    await journal_something(redis_store, 11)
    second = await one.seal()
    assert second is not None  # sealed; then it stops before its drain
    await redis_store.sealed_journal().release_lease("one")
    two = sealer(redis_store, keystore, JournalArchive(archive.path), "two")
    assert await two.step() is None  # nothing more to seal; the block `one` closed is drained
    assert len(hashed) == second.block.count >= 1
    assert [b.seal for b in JournalArchive(archive.path).blocks()] == [first, second]


async def test_blocks_sealed_while_the_archive_fails_are_all_archived_once_it_is_back(
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the archive fails the sealer keeps at most CLOSED_KEPT closed blocks in memory (decision 0048);
    once the archive is back it drains every block in order, hashing again only the ones it forgot."""
    hashed: list[str] = []
    real = journal_archive.leaf_hash

    def counted(stream: str, fields: Mapping[str, str]) -> str:
        hashed.append(stream)
        return real(stream, fields)

    monkeypatch.setattr(journal_archive, "leaf_hash", counted)
    archive = JournalArchive(tmp_path / "archive")
    archive.path.write_text("not a directory")  # the archive's disk fails
    one = sealer(redis_store, keystore, archive, "one")
    blocks = []
    for nonce in range(20, 20 + CLOSED_KEPT + 2):
        await journal_something(redis_store, nonce)
        await one.step()  # sealed, then the drain fails
        blocks.append((await redis_store.sealed_journal().seals_from("0-0"))[-1])
    archive.path.unlink()  # the disk is back
    hashed.clear()
    assert await one.step() is None
    assert [b.seal for b in JournalArchive(archive.path).blocks()] == blocks
    forgotten = blocks[: len(blocks) - CLOSED_KEPT]
    assert len(hashed) == sum(seal.block.count for seal in forgotten) > 0


def _stamp(metrics: Metrics, what: str) -> float:
    value = metrics.registry.get_sample_value(f"sesame_journal_{what}_timestamp_seconds")
    assert value is not None
    return value


async def test_the_holder_publishes_when_the_journal_was_last_sealed_and_archived(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path
) -> None:
    """The lease holder stamps both gauges at each good step; a sealer without the lease stamps nothing; an
    archive that fails stops the archived stamp while sealing goes on (the archive lag an operator sees)."""
    archive = JournalArchive(tmp_path / "archive")
    holding, waiting = Metrics(), Metrics()
    one = Sealer(redis_store.sealed_journal(), keystore, archive, STEADY, holder="one", meter=holding.journal)
    two = Sealer(redis_store.sealed_journal(), keystore, archive, STEADY, holder="two", meter=waiting.journal)
    await journal_something(redis_store, 8)
    before = time.time()
    assert await one.step() is not None
    assert _stamp(holding, "sealed") >= before
    assert _stamp(holding, "archived") >= before
    first = _stamp(holding, "archived")
    assert await one.step() is None  # nothing waits: still everything sealed and archived, as of now
    assert _stamp(holding, "sealed") >= first
    archived = _stamp(holding, "archived")
    assert archived >= first
    assert await two.step() is None
    assert (_stamp(waiting, "sealed"), _stamp(waiting, "archived")) == (0, 0)
    archive.path.rename(tmp_path / "moved")
    archive.path.write_text("not a directory")  # the archive's disk fails
    await journal_something(redis_store, 9)
    stalled = time.time()
    assert await one.step() is None  # sealed, then the drain failed (logged)
    assert _stamp(holding, "sealed") >= stalled
    assert _stamp(holding, "archived") == archived


async def test_a_second_sealer_waits_then_takes_over_when_the_first_dies(
    redis_store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive
) -> None:
    """The first holds the lease and seals; the second seals nothing until the lease, no longer renewed,
    expires; then it continues the same chain."""
    await journal_something(redis_store, 1)
    first, second = (
        sealer(redis_store, keystore, archive, "first", SHORT),
        sealer(redis_store, keystore, archive, "second", SHORT),
    )
    sealed = await first.step()
    assert sealed is not None
    await journal_something(redis_store, 2)
    assert await second.step() is None
    assert not second.holding
    # The first dies here (it renews no more). The second keeps trying, as its loop does.
    deadline = time.monotonic() + 10
    taken = None
    while taken is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        taken = await second.step()
    assert taken is not None
    assert second.holding
    assert (taken.block.number, taken.block.prev) == (2, sealed.block.digest())


async def test_a_sealer_that_lost_its_lease_writes_nothing(
    redis_store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive
) -> None:
    await journal_something(redis_store, 3)
    stale = sealer(redis_store, keystore, archive, "stale")
    assert await stale.step() is not None
    await redis_store.sealed_journal().release_lease("stale")  # as if its lease expired
    other = sealer(redis_store, keystore, archive, "other")
    await other.step()
    assert other.holding
    await journal_something(redis_store, 4)
    with pytest.raises(SealLost, match="lost"):
        await stale.seal()


async def test_a_running_sealer_lets_its_lease_go_when_stopped(
    redis_store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive
) -> None:
    """`run` seals while it holds the lease; stopped cleanly, it frees the lease for the next at once."""
    await journal_something(redis_store, 5)
    running = sealer(redis_store, keystore, archive, "running")
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    journal = redis_store.sealed_journal()
    deadline = time.monotonic() + 10
    sealed = None
    while sealed is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        sealed = await journal.last_seal()
    stop.set()
    await task
    assert sealed is not None
    assert await journal.lease("next", timedelta(seconds=1)) is Lease.TAKEN


async def test_a_sealer_that_takes_the_lease_back_archives_after_the_other_sealers_blocks(
    redis_store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive
) -> None:
    """Two workers, each its own archive object over the one directory: the lease goes from the first to the
    second and back; the first then archives its new block after the second's, not refused against the last
    block it had archived itself."""
    one = sealer(redis_store, keystore, archive, "one")
    two = sealer(redis_store, keystore, JournalArchive(archive.path), "two")
    journal = redis_store.sealed_journal()
    await journal_something(redis_store, 40)
    first = await one.step()
    await journal.release_lease("one")  # as if its lease expired (a stalled worker)
    await journal_something(redis_store, 41)
    second = await two.step()
    await journal.release_lease("two")
    await journal_something(redis_store, 42)
    third = await one.step()
    assert None not in (first, second, third)
    assert [b.seal for b in JournalArchive(archive.path).blocks()] == [first, second, third]


async def test_the_archive_is_read_afresh_off_the_event_loop(
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sealer starting, or taking the lease back, reads the archive's files (the index's catch-up, the last
    block from the newest segment's end) in a thread: not on the loop its worker serves calls on."""
    first = sealer(redis_store, keystore, archive, "first")
    await journal_something(redis_store, 50)
    assert await first.step() is not None
    await redis_store.sealed_journal().release_lease("first")
    readers: list[threading.Thread] = []
    other = JournalArchive(archive.path)
    real = other._last_whole_block  # what `last_block` reads from the files

    def read() -> object:
        readers.append(threading.current_thread())
        return real()

    monkeypatch.setattr(other, "_last_whole_block", read)
    await journal_something(redis_store, 51)
    assert await sealer(redis_store, keystore, other, "second").step() is not None
    assert readers
    assert threading.main_thread() not in readers


async def test_an_entry_that_is_not_utf8_in_a_feed_stops_the_sealing_not_the_sealer(
    redis_store: RedisState,
    redis_client: aioredis.Redis,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
) -> None:
    """A feed entry whose bytes are not UTF-8 (written by something other than the scripts): the step logs
    the store failing and returns, the running sealer keeps trying at its interval (a UnicodeDecodeError
    escaped the step and ended the sealer's task); once the entry is gone it seals again."""
    await journal_something(redis_store, 50)
    feed = redis_store.keys.journal_feed(0)
    bad = await redis_client.xadd(feed, {b"stream": b"x", b"event": b"\xff\xfe"})
    one = sealer(redis_store, keystore, archive, "one")
    assert await one.step() is None
    stop = asyncio.Event()
    task = asyncio.create_task(one.run(stop))
    await asyncio.sleep(0.2)
    assert not task.done()  # still running, retrying
    await redis_client.xdel(feed, bad)
    deadline, blocks = time.monotonic() + 10, []
    while not blocks and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        blocks = list(archive.blocks())
    stop.set()
    await task
    assert [b.seal.block.number for b in blocks] == [1]


async def test_a_block_another_sealer_archived_meanwhile_is_refused_then_read_afresh_in_a_thread(
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sealer whose block another sealer archived while it was stalled (its lease lapsed, the other drained
    the block): its drain is refused, not a second line of the block (decision 0078); its next step reads the
    archive afresh in a thread, finds the block there and lets it go from Redis. Each block once."""
    first = sealer(redis_store, keystore, archive, "first")
    await journal_something(redis_store, 60)
    assert await first.step() is not None  # block 1, archived by `first`
    await journal_something(redis_store, 61)
    two = await first.seal()  # block 2 sealed; `first` stalls before its drain
    assert two is not None
    entries = await redis_store.sealed_journal().stored_entries(two)
    other = JournalArchive(archive.path)  # the sealer that held the lease meanwhile, and drained block 2
    other.append(two, feed_entries(entries))
    with pytest.raises(ArchiveRefused, match="another sealer wrote"):
        await first.drain()
    readers: list[threading.Thread] = []
    real = archive._last_whole_block

    def read() -> object:
        readers.append(threading.current_thread())
        return real()

    monkeypatch.setattr(archive, "_last_whole_block", read)
    assert await first.step() is None  # nothing new to seal; block 2 found archived, let go
    assert readers
    assert threading.main_thread() not in readers
    assert [b.seal.block.number for b in JournalArchive(archive.path).blocks()] == [1, 2]
    assert await redis_store.sealed_journal().stored_seals("0-0") == []


@pytest.mark.parametrize("healed", ["moved aside", "repaired"])
async def test_an_index_that_fails_stops_the_sealing_not_the_sealer(
    healed: str,
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The archive's index failing (here a file that is not a database, as a disk error or a copy cut short
    leaves it; a full disk, a lock held too long are the same sqlite3 errors): the step logs it and returns,
    the running sealer keeps trying (a sqlite3.DatabaseError escaped the step and ended the sealer's task:
    every worker's in turn, nothing sealed again until a restart). The index moved aside (rebuilt from the
    segments) or repaired, the sealing goes on, each block archived once, and no block lacks its row: the
    failed one is indexed before any line after it."""
    one = sealer(redis_store, keystore, archive, "one")
    await journal_something(redis_store, 70)
    assert await one.step() is not None
    index = archive.path / "index.sqlite3"
    good = index.read_bytes()
    index.write_bytes(b"not a database, " * 512)
    await journal_something(redis_store, 71)
    with caplog.at_level(logging.WARNING, logger="sesame.journal"):
        assert await one.step() is None
    assert any("index" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    stop = asyncio.Event()
    task = asyncio.create_task(one.run(stop))
    await asyncio.sleep(0.3)
    assert not task.done()  # still running, retrying
    if healed == "moved aside":
        index.rename(archive.path / "index.sqlite3.broken")
    else:  # the disk freed, the damage repaired: the index as it was, without block 2's row
        index.write_bytes(good)
    await journal_something(redis_store, 72)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the running sealer archived block 3 and let it go
        archived = len(list(JournalArchive(archive.path).blocks()))
        if archived >= 3 and not await redis_store.sealed_journal().stored_seals("0-0"):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    blocks = [b.seal.block.number for b in JournalArchive(archive.path).blocks()]
    assert blocks == list(range(1, len(blocks) + 1))
    assert len(blocks) >= 3
    indexed = JournalArchive(archive.path).index.between(1, blocks[-1])
    assert [where.number for where in indexed] == blocks  # no row missing: block 2's caught up first


async def test_an_archive_line_that_does_not_parse_stops_the_sealing_not_the_sealer(
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A whole last line of the archive that is not a block (edited by hand, a disk's bit rot): the step logs
    it once, naming the change (an outside audit: it was an unexplained JSONDecodeError), and returns; the
    running sealer keeps trying (a JSONDecodeError escaped the step and ended the sealer's task, silently: it
    is awaited only at shutdown)."""
    one = sealer(redis_store, keystore, archive, "one")
    await journal_something(redis_store, 80)
    assert await one.step() is not None
    (segment,) = archive.path.glob("segment-*.jsonl")
    with segment.open("a", encoding="utf-8") as out:
        out.write("{not json\n")
    archive.read_afresh()
    await journal_something(redis_store, 81)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="sesame.journal"):
        assert await one.step() is None
        task = asyncio.create_task(one.run(stop))
        await asyncio.sleep(0.3)
        assert not task.done()  # still running, retrying
        stop.set()
        await task
    failed = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failed) == 1
    assert "the archive was changed in place" in failed[0].getMessage()


async def _sealed_twice_within(
    store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive, timing: SealerTiming, limit: float
) -> bool:
    """Run a sealer with `timing`; once it sealed a first block, journal more: whether a second block was
    sealed within `limit` seconds."""
    await journal_something(store, 40)
    running = sealer(store, keystore, archive, "paced", timing)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    journal = store.sealed_journal()
    try:
        first = None
        deadline = time.monotonic() + 10
        while first is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            first = await journal.last_seal()
        assert first is not None
        await journal_something(store, 41)  # before the next step, which comes a second later at the soonest
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            last = await journal.last_seal()
            if last is not None and last.block.number > first.block.number:
                return True
            await asyncio.sleep(0.02)
        return False
    finally:
        stop.set()
        await task


async def test_after_a_step_that_sealed_the_next_comes_after_the_busy_interval(
    redis_store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive
) -> None:
    """With a busy interval, what is journaled after a seal is sealed that soon, though `interval` is a
    minute (decision 0085: the sealer process steps 5 times as often while there is work)."""
    busy = SealerTiming(
        interval=timedelta(minutes=1), lease=timedelta(seconds=30), busy_interval=timedelta(seconds=1)
    )
    assert await _sealed_twice_within(redis_store, keystore, archive, busy, 5.0)


async def test_without_a_busy_interval_the_next_step_waits_the_interval(
    redis_store: RedisState, keystore: Pkcs11KeyStore, archive: JournalArchive
) -> None:
    """Without one (the default), the next step after a seal waits `interval`, as after an empty step."""
    steady = SealerTiming(interval=timedelta(minutes=1), lease=timedelta(seconds=30))
    assert not await _sealed_twice_within(redis_store, keystore, archive, steady, 3.0)


async def test_an_archive_edited_in_place_is_named_so(
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    archive: JournalArchive,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by an outside audit: one byte inserted into a line in the middle of the live segment moved every
    line after it, and the sealer stopped archiving with "unexpected JSONDecodeError", after blaming another
    sealer. The step says a block is not where the archive's index says: the archive was changed in place."""
    one = sealer(redis_store, keystore, archive, "one")
    for nonce in range(90, 93):
        await journal_something(redis_store, nonce)
        assert await one.step() is not None
    (segment,) = archive.path.glob("segment-*.jsonl")
    lines = segment.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    lines[1] = lines[1].replace(b'"', b' "', 1)  # still JSON: a byte more, every later line moved by one
    segment.write_bytes(b"".join(lines))
    with caplog.at_level(logging.WARNING, logger="sesame.journal"):
        for nonce in range(93, 95):
            await journal_something(redis_store, nonce)
            await one.step()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("the archive was changed in place; `sesame journal verify` says where" in x for x in said), (
        said
    )
    assert not any("unexpected" in line for line in said), said

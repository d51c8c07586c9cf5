"""The journal's sealer (docs/decisions/0027): one at a time, a signed block at least every second.

Every worker of `sesame serve` runs one; the one holding the lease in Redis seals, the others try to take it
every `interval` and do so once it expired (its holder died or stopped renewing). A block is closed over the
entries appended since the last seal, signed by the current `sesame-journal-v<N>` key in the HSM, and kept
with its leaves by one script that checks the lease and that no other seal came since the one it follows.
Then the sealed blocks are drained, in order and checked, into the archive, and Redis lets them go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Protocol

from sesame.clients.redis_journal import (
    Lease,
    RedisJournal,
    SealLost,
    StoredEntries,
    StoredSeal,
    feed_entries,
)
from sesame.server.clock_watch import ClockWatch, SystemClock
from sesame.server.domain.errors import ClockOff, SesameError, StoreUnavailable
from sesame.server.domain.evidence_index import IndexedOpening, indexed_opening
from sesame.server.domain.journal_seal import Block, Closed, FeedEntry, Leaf, Seal, close_block, leaves_of
from sesame.server.domain.model import KeyRef
from sesame.server.domain.ports import Clock, EvidenceIndex
from sesame.server.journal_archive import ArchiveRefused, JournalArchive

_log = logging.getLogger("sesame.journal")
PRUNE_EVERY_SECONDS = 3600  # segments past the retention are deleted at most this often
DROPS_AT_ONCE = 64  # journals let go per round trip (one script each, pipelined: Redis runs them in a row)
# Blocks closed here kept in memory while the archive lags (one between a seal and its drain when all is
# well); a failing archive would otherwise hold up to 10,000 entries a second in each worker. Older ones are
# hashed again when drained.
CLOSED_KEPT = 4
# Entries hashed, or looked at for the index, between two yields to the event loop: a busy second's block
# (hundreds of entries at 15-45 µs each) in one go held every call of the worker 10-40 ms (decision 0052).
ENTRIES_AT_ONCE = 64
# Entries per block at most. A block's entries are held three times over while it is sealed and drained
# (read, kept closed, read back for the archive): a busy second's 2,000 held a worker 20-30 MB above the other
# (decision 0052). A backlog is sealed in several blocks in one step, while half the lease lasts.
BLOCK_ENTRIES = 512


class JournalKeys(Protocol):
    """What the sealer needs of the HSM."""

    async def current_journal_key(self) -> KeyRef:
        """The newest `sesame-journal-v<N>` key."""
        ...

    async def sign(self, key: KeyRef, data: bytes) -> bytes:
        """ES256 (raw r || s) of `data` under `key`."""
        ...


class SealerMeter(Protocol):
    """Where the lease holder says the journal is sealed and archived up to now: what an operator alerts on
    (a sealer that stops saying so is failing, or none holds the lease)."""

    def sealed(self) -> None:
        """Every entry appended until now is sealed (a block was kept, or none waited)."""
        ...

    def archived(self) -> None:
        """Every sealed block is in the archive."""
        ...


class _Unmetered:
    def sealed(self) -> None:
        pass

    def archived(self) -> None:
        pass


# How long seals and the evidence are kept: 13 months (CMF L.133-24), rounded up.
RETENTION: Final = timedelta(days=396)


@dataclass(frozen=True, slots=True)
class SealerTiming:
    """How often it seals, how long its lease lasts, how long seals are kept."""

    interval: timedelta = timedelta(seconds=1)
    lease: timedelta = timedelta(seconds=5)
    retention: timedelta = RETENTION
    # How long one step seals a backlog block after block before the next step renews the lease (half the
    # lease when None: a step that outlasted it would find the lease lost). 0: one block a step.
    step: timedelta | None = None
    # The wait after a step that sealed a block (None: `interval`): under load, a step a second sealed a
    # second's entries in one burst of CPU and of Redis, which the calls beside it waited behind; steps 5
    # times as often cut the calls' p99 by a third (decision 0085). Idle, a step is still once an `interval`.
    busy_interval: timedelta | None = None


@dataclass(frozen=True, slots=True)
class _Kept:
    """A block this process closed: the seal and the entries it hashed (decision 0048), and both as Redis
    keeps them, to see them unchanged at the drain without parsing or decoding them again (decision 0071)."""

    closed: Closed
    recorded: StoredSeal
    stored: StoredEntries


def holder_name() -> str:
    """This sealer's name in the lease: host, process, and a random part (a restarted pid differs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Sealer:
    """Seals the journal while it holds the lease."""

    def __init__(  # noqa: PLR0913 (holder, meter and index are keyword-only, with defaults)
        self,
        journal: RedisJournal,
        keys: JournalKeys,
        archive: JournalArchive,
        timing: SealerTiming | None = None,
        *,
        holder: str = "",
        meter: SealerMeter | None = None,
        index: EvidenceIndex | None = None,
        clock: Clock | None = None,
        clock_watch: ClockWatch | None = None,
    ) -> None:
        """With `clock_watch` (of `clock`, the system clock by default), a step while the clock is out of
        step with Redis's seals nothing and lets the lease go (decision 0104)."""
        # Let the closed challenges' journals go from Redis once archived (decision 0037); the tests that
        # tamper with one in Redis after its seal turn this off.
        self.drops_journals = True
        self._indexed = False
        self._journal = journal
        self._meter = meter or _Unmetered()
        self._keys = keys
        self._archive = archive
        self._index = index
        self._pruned_at = 0.0
        self._timing = timing or SealerTiming()
        self._clock = clock or SystemClock()
        self._clock_watch = clock_watch
        self.holder = holder or holder_name()
        self.holding = False
        self._failing = ""  # the last failure logged: a lasting one is logged once, not every second
        # The blocks this process closed that the archive lacks yet, with the entries it hashed (0048).
        self._closed: dict[int, _Kept] = {}
        self.behind = False  # the last seal left entries waiting: the step seals another block

    async def run(self, stop: asyncio.Event) -> None:
        """Take the lease when free, seal while holding it, until `stop`; then let the lease go. A step that
        left a backlog (its share of time spent, more waiting) is followed by the next at once, after the
        calls waiting on the loop ran: under a sustained load, waiting an interval per step let the backlog
        grow (decision 0071). A step that sealed a block: the next after `busy_interval`. Nothing waiting, no
        lease, or a failure: the next step after `interval`."""
        timing = self._timing
        try:
            while not stop.is_set():
                sealed = await self.step()
                if self.holding and self.behind and not self._failing:
                    await asyncio.sleep(0)
                    continue
                wait = timing.interval
                if sealed is not None and timing.busy_interval is not None:
                    wait = timing.busy_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait.total_seconds())
        finally:
            if self.holding:
                await self._let_go()

    async def _in_step(self) -> bool:
        """Check the clock against Redis's (when watched); out of step, let the lease go if held."""
        if self._clock_watch is None:
            return True
        try:
            await self._clock_watch.check()
        except ClockOff:
            if self.holding:
                self.holding = False
                self._closed.clear()  # the next holder drains them from Redis
                await self._let_go()
            return False
        return True

    async def _let_go(self) -> None:
        """Release the lease at a clean stop. Redis away then (StoreUnavailable): the lease expires by itself
        within its length; raising here made the worker skip its drain and exit 2 (decision 0062)."""
        try:
            await self._journal.release_lease(self.holder)
        except StoreUnavailable as exc:
            _log.warning(
                "the sealer's lease was not released (%s): another sealer takes it within %.0f s",
                exc,
                self._timing.lease.total_seconds(),
            )

    async def step(self) -> Seal | None:
        """Renew or take the lease; while held, seal what waits. Failures are logged and retried. A clock out
        of step seals nothing (its blocks' times would be wrong, and ahead it would prune the archive and the
        evidence index by the retention early: a year ahead, eleven months of evidence gone): the lease is
        let go, for a sealer in step to take."""
        try:
            if not await self._in_step():
                return None
            lease = await self._journal.lease(self.holder, self._timing.lease)
            self.holding = lease is not Lease.ANOTHERS
            if not self.holding:
                self._closed.clear()  # another sealer drains them: this one's memory of them would go stale
            if lease is Lease.TAKEN:  # free or lapsed: another sealer may have archived blocks meanwhile
                self._archive.read_afresh()
                self._indexed = False
            sealed = await self._seal_and_drain() if self.holding else None
        except (SesameError, SealLost, OSError) as exc:
            if str(exc) != self._failing:
                _log.warning("the journal is not being sealed: %s", exc)
            self._failing = str(exc)
            return None
        except Exception as exc:  # noqa: BLE001 (the last line of defence: the task must outlive it)
            # Unforeseen (an archive line that does not parse, say): ending the task would stop this worker's
            # sealing silently, its task awaited only at shutdown; logged once with its traceback, retried.
            failing = f"{type(exc).__name__}: {exc}"
            if failing != self._failing:
                _log.exception("the journal is not being sealed: unexpected %s", type(exc).__name__)
            self._failing = failing
            return None
        if self._failing:
            _log.info("the journal is sealed again")
            self._failing = ""
        return sealed

    async def _seal_and_drain(self) -> Seal | None:
        """Seal what waits and archive it, a block at a time (each drained before the next is read), while
        more waits and the step's share of time lasts (`SealerTiming.step`); the last block sealed."""
        share = self._timing.step if self._timing.step is not None else self._timing.lease / 2
        until = time.monotonic() + share.total_seconds()
        last = None
        while True:
            sealed = await self.seal()
            last = sealed or last
            self._meter.sealed()
            await self.drain()
            self._meter.archived()
            if sealed is None or not self.behind or time.monotonic() >= until:
                return last
            await asyncio.sleep(0)  # the calls waiting on this worker's loop run between two blocks

    async def seal(self) -> Seal | None:
        """Close and keep one block over the oldest entries waiting, `BLOCK_ENTRIES` at most (None when none
        waits). SealLost."""
        previous = await self._journal.last_seal()
        after = previous.block.last if previous else ""
        unsealed = await self._journal.unsealed(after, BLOCK_ENTRIES)
        entries = unsealed.entries
        self.behind = unsealed.more and bool(entries)  # nothing ready is never a backlog to go on with
        if not entries:
            return None
        key = await self._keys.current_journal_key()
        hashed: list[Leaf] = []
        for start in range(0, len(entries), ENTRIES_AT_ONCE):
            hashed += leaves_of(entries[start : start + ENTRIES_AT_ONCE])
            await asyncio.sleep(0)  # the calls waiting on this worker's loop run between two slices
        now = self._clock.now()
        block, leaves = close_block(
            previous.block if previous else None,
            entries,
            now.isoformat(timespec="milliseconds"),
            key.label,
            tuple(hashed),
        )
        seal = Seal(block, await self._keys.sign(key, block.payload()), leaves)
        recorded = await self._journal.record_seal(self.holder, seal, previous)
        self._closed[block.number] = _Kept(Closed(seal, tuple(entries)), recorded, unsealed.stored)
        if len(self._closed) > CLOSED_KEPT:  # the archive is failing: forget the oldest (hashed when drained)
            del self._closed[min(self._closed)]
        return seal

    async def drain(self) -> int:
        """Archive the sealed blocks the archive lacks, in order and checked; then drop them from Redis.

        Returns how many were archived. ArchiveRefused (nothing more archived) when one does not follow the
        archive or its entries are not what it seals; SealLost; OSError when the disk fails.
        """
        # An archive from before its index, a crash before a line's index row, or one read afresh since (a
        # lease taken, a line refused because another sealer wrote: decision 0078).
        if not self._indexed or not self._archive.known:
            await asyncio.to_thread(self._archive.catch_up_index)
            # The last block read afresh from the files (a line parsed, a torn tail cut under the archive's
            # lock: decisions 0074, 0078) off the loop; kept by the archive until it is read afresh again.
            await asyncio.to_thread(self._archive.last_block)
            self._indexed = True
        archived = self._archive.last_block()
        done, count = None, 0
        seals: list[Seal] = []
        stored_seals = await self._journal.stored_seals("0-0")
        _check_same_chain(archived, [recorded.block() for recorded in stored_seals])
        for recorded in stored_seals:
            kept = self._kept(recorded)
            seal = kept.closed.seal if kept is not None else recorded.seal()
            seals.append(seal)
            stored = await self._journal.stored_entries(seal)
            closed = kept.closed if kept is not None and kept.stored == stored else None
            entries = closed.entries if closed is not None else feed_entries(stored)
            if archived is None or seal.block.number > archived.number:
                if closed is not None:
                    await asyncio.to_thread(self._archive.append_closed, closed)
                else:
                    await asyncio.to_thread(self._archive.append, seal, entries)
                archived, count = seal.block, count + 1
            await self._index_openings(entries)
            done = seal
        if done is not None:
            self._closed = {n: c for n, c in self._closed.items() if n > done.block.number}
        # The closed challenges' journals go before the seals that name them: a crash in between finds them
        # again in the seals Redis still holds (decision 0037). Those kept open are seen at their expiry.
        await self.drop_journals({leaf.stream for seal in seals for leaf in seal.leaves})
        if done is not None:
            await self._journal.drop_archived(self.holder, done)
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_SECONDS:
            cutoff = self._clock.now() - self._timing.retention
            await asyncio.to_thread(self._archive.prune, cutoff.isoformat(timespec="milliseconds"))
            self._pruned_at = time.monotonic()
        return count

    def _kept(self, recorded: StoredSeal) -> _Kept | None:
        """The block this process closed whose seal Redis still holds as it was kept (the same bytes: the
        same seal, its leaves not parsed again, decision 0071); None for any other (closed by another sealer,
        forgotten, or changed in Redis: parsed, and its block hashed and checked). The drain archives a kept
        block from the entries it hashed only when they too are read back unchanged (compared, not hashed:
        decision 0048; as Redis sent them, not decoded: 0071): its leaves are theirs, and the archive checks
        only its place in the chain."""
        return next((kept for kept in self._closed.values() if kept.recorded == recorded), None)

    async def _index_openings(self, entries: Sequence[FeedEntry]) -> None:
        """Index the challenges these archived entries open, by user (decision 0036); again after a retry."""
        if self._index is None:
            return
        openings: list[IndexedOpening] = []
        for start in range(0, len(entries), ENTRIES_AT_ONCE):
            chunk = entries[start : start + ENTRIES_AT_ONCE]
            openings += [found for e in chunk if (found := indexed_opening(e.fields)) is not None]
            await asyncio.sleep(0)
        await self._index.index(openings, self._clock.now(), self._timing.retention)

    async def drop_journals(self, streams: set[str]) -> dict[str, int]:
        """Let go of the closed challenges' journals among `streams`, and of those kept while their challenge
        was open that expired since, when the archive holds every entry of them (fsync'ed and indexed first);
        note the open ones to see again at their expiry. How many journals had each outcome."""
        if not self.drops_journals:
            return {}
        now_ms = int(self._clock.now().timestamp() * 1000)
        due = await self._journal.kept_due(now_ms)
        candidates = sorted({s for s in streams if self._journal.keys.is_challenge_journal(s)} | set(due))
        if not candidates:
            return {}
        await asyncio.to_thread(self._archive.catch_up_index)
        held = self._archive.last_block()
        if held is None:
            return {}
        outcomes: dict[str, int] = {}
        kept: dict[str, int] = {}
        settled: list[str] = []
        for start in range(0, len(candidates), DROPS_AT_ONCE):
            batch = candidates[start : start + DROPS_AT_ONCE]
            answers = await self._journal.drop_journals(batch, held.last, now_ms)
            for stream, (outcome, expires) in zip(batch, answers, strict=True):
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if outcome == "open":
                    kept[stream] = expires
                else:
                    settled.append(stream)
        await self._journal.keep(kept)
        await self._journal.forget_kept([s for s in settled if s in due])
        return outcomes


def _check_same_chain(archived: Block | None, stored: Sequence[Block]) -> None:
    """That the blocks Redis holds are the archive's chain: those numbered up to the archive's last are ones
    it holds (a crash between a line and Redis's drop leaves them), ending at that last block itself.
    ArchiveRefused otherwise.

    Redis restarted empty, or from an append-only file that lost its last second, seals a chain of its own
    from block 1 (or from a block the archive went past): its blocks were taken for archived ones by their
    numbers and dropped from Redis, their entries neither in Redis nor in the archive, while the meter said
    archived (decision 0084). Refused, they stay in Redis, and the log says why.
    """
    if archived is None:
        return
    behind = [block for block in stored if block.number <= archived.number]
    if behind and behind[-1] != archived:
        raise ArchiveRefused(
            f"Redis's journal forks from the archive (last archived: block {archived.number}): Redis lost "
            "journal state (restarted empty, or from an older append-only file); its blocks stay in Redis, "
            "unarchived"
        )

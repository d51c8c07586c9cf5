"""The sealed journal in Redis (decisions 0027, 0044): the feeds of unsealed entries, the seals, the lease.

`_journal.lua` copies every journal entry, with its stream's name, to its shard's feed; the sealer holding
the lease reads every shard's feed, signs one block over their entries in the order of their ids and keeps
it in the seals stream (under the id of the last entry it seals); once the archive holds the block, the
feeds' entries and the seals before it are dropped.
"""

from __future__ import annotations

import base64
import enum
import json
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final, NamedTuple, TypeAlias, cast

from sesame.clients import redis_records as rec
from sesame.clients.redis_connect import RedisClient
from sesame.clients.redis_keys import FEED_RESIDUES, Keyspace
from sesame.clients.redis_scripts import Scripts, translated
from sesame.server.domain.errors import StoreUnavailable
from sesame.server.domain.journal_seal import Block, FeedEntry, Leaf, Seal, id_key

_STREAM_ID: Final = re.compile(r"(\d+)-(\d+)")
FEED_BATCH = 10_000  # entries per block at most: a busier second takes several blocks
# Entries read from each shard beyond its share of a block (its feed's share of the feeds' lengths): the
# lengths are read a round trip before the entries, which may have grown since (decision 0070).
READ_SLACK = 16
# Journals noted as kept per keep_journals.lua call: two arguments each, well under what Lua's unpack takes.
KEPT_AT_ONCE = 1024


# A block's entries as Redis sent them, by shard (the lane's lists, or redis-py's parsed pairs on a
# cluster): compared as they are, equal values are equal entries without decoding them again (decision 0071).
StoredEntries: TypeAlias = tuple[list[Any], ...]


class Unsealed(NamedTuple):
    """What `RedisJournal.unsealed` found ready to seal, whether more may wait beyond it, and those entries
    as Redis sent them (what `stored_entries` of their seal answers while they are unchanged)."""

    entries: list[FeedEntry]
    more: bool
    stored: StoredEntries


class StoredSeal(NamedTuple):
    """A seal as the seals stream holds it, its fields as Redis sends them: equal to what `record_seal` kept
    while unchanged, compared without parsing its leaves (decision 0071)."""

    fields: dict[bytes, bytes]

    def seal(self) -> Seal:
        """The seal these fields hold; StoreUnavailable when they are damaged."""
        return _seal(self.fields)

    def block(self) -> Block:
        """The block these fields seal, its leaves not parsed; StoreUnavailable when it is damaged."""
        try:
            return Block.from_json(self.fields[b"block"])
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreUnavailable("corrupt journal seal") from exc


class Lease(enum.Enum):
    """What `journal_lease.lua` found: the lease another sealer's, taken (free or lapsed), or renewed."""

    ANOTHERS = 0
    TAKEN = 1
    RENEWED = 2


class SealLost(Exception):
    """The sealer lost its lease, or another seal came first: nothing was written."""


def next_id(entry_id: str) -> str:
    """The smallest stream id after `entry_id`."""
    match = _STREAM_ID.fullmatch(entry_id)
    if match is None:
        raise ValueError(f"not a stream id: {entry_id!r}")
    return f"{match.group(1)}-{int(match.group(2)) + 1}"


class RedisJournal:
    """The feed, the seals and the sealer's lease, under `<prefix>:{journal}`."""

    def __init__(self, client: RedisClient, keys: Keyspace, scripts: Scripts) -> None:
        """Share the state's client, key names and scripts (`RedisState.sealed_journal`)."""
        self._client = client
        self.keys = keys
        self._scripts = scripts

    async def lease(self, holder: str, length: timedelta) -> Lease:
        """Take or renew the lease for `length`: whether `holder` renewed it, took it (free or lapsed), or
        another sealer holds it."""
        ms = int(length.total_seconds() * 1000)
        return Lease(await self._scripts.run("journal_lease", [self.keys.journal_sealer()], [holder, ms]))

    async def release_lease(self, holder: str) -> None:
        """Let the lease go now, if `holder` has it (a clean stop: the next sealer need not wait)."""
        with translated():
            key = self.keys.journal_sealer()
            if await self._client.get(key) == holder.encode():
                await self._client.delete(key)

    async def unsealed(self, after: str, limit: int = FEED_BATCH) -> Unsealed:
        """The oldest entries after the id `after` ("" from the start) that may be sealed now (`limit` at
        most), in the order of their ids: every shard's feed is read (`read_feed.lua`, one call per shard:
        one slot each), and only the entries below the lowest id a shard can append next are taken: none
        can come later below it. The shards' frontiers go in one pipeline, then their entries up to them in
        another (XRANGE: a script's reply of the entries cost Redis more than the read itself, decision
        0061). The second read takes about `limit` entries in all, shared out by the feeds' lengths
        (decision 0070: every shard read up to `limit` to keep `limit` of them held the sealing worker
        ~35 MB higher). A shard whose read stops before its frontier bounds the rest at its last entry
        read: what it holds beyond is above that bound, so the entries returned are still the oldest.
        `more` says that a read stopped short or more than `limit` were ready: more may wait now."""
        below: tuple[int, int] | None = None
        entries: list[tuple[tuple[int, int], int, Any]] = []
        feeds = self.keys.journal_feeds()
        replies = await self._scripts.run_all("read_feed", [([feed], [after, limit]) for feed in feeds])
        frontiers = [reply[0].decode() for reply in replies]
        lengths = [int(reply[1]) for reply in replies]
        total = max(sum(lengths), 1)
        counts = [min(limit, -(-limit * length // total) + READ_SLACK) for length in lengths]
        start = "-" if after == "" else f"({after}"
        read = await self._scripts.read_each(
            "feed_entries",
            [
                ("XRANGE", feed, start, frontier, "COUNT", count)
                for feed, frontier, count in zip(feeds, frontiers, counts, strict=True)
            ],
        )
        more = False
        for shard, (frontier, count, raw) in enumerate(zip(frontiers, counts, read, strict=True)):
            keyed = [(id_key(entry[0].decode()), shard, entry) for entry in raw]  # fields decoded once taken
            short = len(keyed) == count and keyed[-1][0] != id_key(frontier)
            edge = _next_possible(keyed[-1][0] if short else id_key(frontier), shard)
            below = edge if below is None else min(below, edge)
            entries += keyed
            more = more or len(keyed) >= count
        entries.sort(key=_first)  # ids are unique across the shards' feeds (their residues)
        ready = [(shard, entry) for key, shard, entry in entries if below is not None and key < below]
        stored: StoredEntries = tuple([] for _ in feeds)
        for shard, entry in ready[:limit]:  # each shard's a prefix of its read, as XRANGE gives it back
            stored[shard].append(entry)
        taken = _feed_entries([entry for _, entry in ready[:limit]])
        return Unsealed(taken, more=more or len(ready) > limit, stored=stored)

    async def sealed_entries(self, seal: Seal) -> list[FeedEntry]:
        """The feeds' entries that `seal` covers (until the archive has them), in the order of their ids."""
        return feed_entries(await self.stored_entries(seal))

    async def stored_entries(self, seal: Seal) -> StoredEntries:
        """The feeds' entries that `seal` covers, as Redis sends them, by shard: equal to the `stored` of the
        read that gave its block while none changed (`feed_entries` decodes them)."""
        first, last = seal.block.first, seal.block.last
        reads = [("XRANGE", feed, first, last) for feed in self.keys.journal_feeds()]
        return tuple(await self._scripts.read_each("feed_entries", reads))

    async def last_seal(self) -> Seal | None:
        """The newest seal (once archived, without its leaves), or None before the first."""
        with translated():
            raw = await self._client.xrevrange(self.keys.journal_seals(), count=1)
            head = cast("dict[bytes, bytes]", await self._client.hgetall(self.keys.journal_head()))
        seals = [_seal(fields) for _, fields in cast("list[tuple[bytes, dict[bytes, bytes]]]", raw)]
        if seals:
            return seals[0]
        return _seal({**head, b"leaves": b"[]"}) if head else None

    async def record_seal(self, holder: str, seal: Seal, after: Seal | None) -> StoredSeal:
        """Keep `seal`, which follows `after`; what was kept, as `stored_seals` reads it back. SealLost."""
        leaves = json.dumps([leaf.as_list() for leaf in seal.leaves], separators=(",", ":"))
        kept = StoredSeal(
            {b"block": seal.block.payload(), b"signature": _b64(seal).encode(), b"leaves": leaves.encode()}
        )
        fields = [part for name_value in kept.fields.items() for part in name_value]
        keys = [self.keys.journal_sealer(), self.keys.journal_seals(), self.keys.journal_head()]
        args = [holder, after.block.last if after else "", seal.block.last]
        _outcome(await self._scripts.run("record_seal", keys, [*args, *fields]), b"sealed")
        return kept

    async def drop_archived(self, holder: str, last: Seal) -> None:
        """Drop the seals up to `last` (archived), keeping its head, then each shard's feed entries up to it
        (one slot per call, in one pipeline: a crash in between leaves entries that the next drop trims and
        that the sealer, reading after `last`, never seals again). SealLost."""
        keys = [self.keys.journal_sealer(), self.keys.journal_seals(), self.keys.journal_head()]
        first_kept = next_id(last.block.last)
        args = [holder, last.block.last, first_kept, last.block.payload().decode(), _b64(last)]
        _outcome(await self._scripts.run("drop_archived", keys, args), b"dropped")
        with translated():
            async with self._client.pipeline(transaction=False) as pipe:
                for feed in self.keys.journal_feeds():
                    pipe.xtrim(feed, minid=first_kept, approximate=False)
                await pipe.execute()

    async def seals_from(self, first_id: str) -> list[Seal]:
        """Every seal kept whose last entry is at or after `first_id`, oldest first."""
        return [stored.seal() for stored in await self.stored_seals(first_id)]

    async def stored_seals(self, first_id: str) -> list[StoredSeal]:
        """`seals_from`, each seal as Redis sent it (parsed by its `seal()`)."""
        with translated():
            raw = await self._client.xrange(self.keys.journal_seals(), min=first_id)
        return [StoredSeal(fields) for _, fields in cast("list[tuple[bytes, dict[bytes, bytes]]]", raw)]

    async def stream_entries(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        """A journal stream as Redis holds it: ids and fields, oldest first (its older entries may have left
        for the archive: decision 0037)."""
        raw = await self._scripts.call("challenge_journal", self._client.xrange(stream))
        return [(i.decode(), rec.decoded(f)) for i, f in cast("list[tuple[bytes, dict[bytes, bytes]]]", raw)]

    async def drop_journals(self, streams: Sequence[str], held: str, now_ms: int) -> list[tuple[str, int]]:
        """Let closed challenges' journals go if the archive holds every entry of them (`held`: the id of the
        last entry archived): one script each, pipelined (decision 0048). For each, the outcome (`dropped`,
        `gone`, `newer`, `open`) and, when open, its expiry."""
        args: list[rec.Field] = [held, now_ms]
        calls = [
            ([stream, self.keys.journal_tail(stream), self.keys.challenge_of_journal(stream)], args)
            for stream in streams
        ]
        replies = await self._scripts.run_all("drop_journal", calls)
        return [(reply[0].decode(), int(reply[1]) if len(reply) > 1 else 0) for reply in replies]

    async def keep(self, streams: dict[str, int]) -> None:
        """Note archived journals kept while their challenge is open, until its expiry (unix ms): by
        keep_journals.lua, which runs out of memory (decision 0132), KEPT_AT_ONCE a call."""
        items = sorted(streams.items())
        calls: list[tuple[Sequence[str], Sequence[rec.Field]]] = []
        for start in range(0, len(items), KEPT_AT_ONCE):
            args: list[rec.Field] = []
            for stream, expires in items[start : start + KEPT_AT_ONCE]:
                args += [expires, stream]
            calls.append(([self.keys.journal_kept()], args))
        if calls:
            await self._scripts.run_all("keep_journals", calls)

    async def kept_due(self, now_ms: int) -> list[str]:
        """The kept journals whose challenge expired by `now_ms`."""
        with translated():
            raw = await self._client.zrangebyscore(self.keys.journal_kept(), "-inf", now_ms)
        return [member.decode() for member in cast("list[bytes]", raw)]

    async def forget_kept(self, streams: Sequence[str]) -> None:
        """No longer note `streams` as kept (dropped, or seen again when their newer entry is archived)."""
        if streams:
            with translated():
                await self._client.zrem(self.keys.journal_kept(), *streams)


def feed_entries(stored: StoredEntries) -> list[FeedEntry]:
    """The entries of every shard's read, decoded, in the order of their ids."""
    entries: list[FeedEntry] = []
    for raw in stored:
        entries += _feed_entries(raw)
    return sorted(entries, key=lambda e: id_key(e.id))


def _first(item: tuple[tuple[int, int], int, Any]) -> tuple[int, int]:
    return item[0]


def _next_possible(frontier: tuple[int, int], shard: int) -> tuple[int, int]:
    """The lowest id a shard whose feed stands at `frontier` can append next (`feed_id_after` in
    `_journal.lua`): the same millisecond, the next sequence of its residue (a later one is above)."""
    ms, seq = frontier
    return ms, (seq // FEED_RESIDUES + 1) * FEED_RESIDUES + shard


def _feed_entries(raw: Any) -> list[FeedEntry]:
    """The entries of one read, decoded. A damaged one (not UTF-8, a name without its value) is the store
    failing, as a damaged seal is: StoreUnavailable, which the sealer logs and retries at its interval (a
    ValueError ended its task)."""
    entries = []
    try:
        for entry_id, fields in cast("list[tuple[bytes, dict[bytes, bytes] | list[bytes]]]", raw):
            if isinstance(fields, dict):  # redis-py's parsed reply (a cluster's pipeline)
                decoded = rec.decoded(fields)
            else:  # the lane's flat list of names and values, decoded in one pass (no dict of bytes: 0071)
                names = iter(fields)  # zip of one iterator with itself: (name, value) pairs; odd: ValueError
                decoded = {name.decode(): value.decode() for name, value in zip(names, names, strict=True)}
            stream = decoded.pop("stream", "")
            entries.append(FeedEntry(entry_id.decode(), stream, decoded))
    except ValueError as exc:  # UnicodeDecodeError is one
        raise StoreUnavailable("corrupt journal entry in a feed") from exc
    return entries


def _b64(seal: Seal) -> str:
    return base64.urlsafe_b64encode(seal.signature).decode().rstrip("=")


def _outcome(outcome: Any, expected: bytes) -> None:
    if outcome != expected:
        raise SealLost(outcome.decode() if isinstance(outcome, bytes) else str(outcome))


def _seal(fields: dict[bytes, bytes]) -> Seal:
    """The seal a stream entry holds; a damaged one is the store failing."""
    try:
        signature = fields[b"signature"].decode()
        leaves: Sequence[Any] = json.loads(fields[b"leaves"])
        return Seal(
            Block.from_json(fields[b"block"]),
            base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
            tuple(Leaf.from_list(leaf) for leaf in leaves),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreUnavailable("corrupt journal seal") from exc

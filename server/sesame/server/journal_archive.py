"""The journal's archive (docs/decisions/0027, issue 8 item 2): sealed blocks in append-only segment files.

Redis is the live journal, not the archive. The sealer drains each sealed block, in order and verified
(its entries give its leaves and root, it follows the last block archived), into the current segment file,
one JSON line per block (the seal and its entries), flushed and fsync'ed before Redis lets the block go.
A segment holds SEGMENT_BLOCKS blocks, then the next one starts (`segment-<first block number>.jsonl`). Only
the sealer holding the lease writes; evidence reads the complete lines of every segment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sesame.server.domain.errors import SesameError
from sesame.server.domain.journal_seal import (
    Block,
    FeedEntry,
    Seal,
    leaf_hash,
    merkle_root,
    seal_from_dict,
    seal_to_dict,
)

SEGMENT_BLOCKS = 10_000  # blocks per segment file: at one block a second, about three hours


class ArchiveRefused(SesameError):
    """A block that does not follow the archive, or whose entries do not give its seal: not archived."""


@dataclass(frozen=True, slots=True)
class ArchivedBlock:
    """One line of a segment: a seal and the entries it seals."""

    seal: Seal
    entries: tuple[FeedEntry, ...]


class JournalArchive:
    """Segment files under one directory (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: Block | None = None
        self._read_last = False

    def last_block(self) -> Block | None:
        """The last block archived, or None for an empty archive."""
        if not self._read_last:
            segments = self._segments()
            last = None
            for block in self._blocks(segments[-1:]):
                last = block.seal.block
            self._last, self._read_last = last, True
        return self._last

    def append(self, seal: Seal, entries: Sequence[FeedEntry]) -> None:
        """Archive one sealed block after checking it. ArchiveRefused; OSError when the disk fails."""
        check_block(self.last_block(), seal, entries)
        self.path.mkdir(parents=True, exist_ok=True)
        number = seal.block.number
        segment = self.path / f"segment-{number - (number - 1) % SEGMENT_BLOCKS:012d}.jsonl"
        line = json.dumps(
            {"seal": seal_to_dict(seal), "entries": [[e.id, e.stream, dict(e.fields)] for e in entries]},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        with segment.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())
        self._last = seal.block

    def seals_from(self, first_id: str) -> list[Seal]:
        """Every archived seal whose last entry is at or after `first_id`, oldest first."""
        after = _id_key(first_id)
        return [b.seal for b in self._blocks(self._segments()) if _id_key(b.seal.block.last) >= after]

    def seals_holding(self, ids: Sequence[str]) -> list[Seal]:
        """The archived seals whose range of entry ids holds one of `ids`, oldest first (decision 0036).

        Reads the first line of every segment, then only the segments whose range holds one of the ids: a
        user's lifecycle spread over a year reads a few segments, not the year.
        """
        wanted = sorted(_id_key(i) for i in ids)
        segments = self._segments()
        starts = [self._first_id(segment) for segment in segments]
        found = []
        for n, segment in enumerate(segments):
            low, high = starts[n], starts[n + 1] if n + 1 < len(starts) else None
            if low is None or not any(low <= k and (high is None or k < high) for k in wanted):
                continue
            for archived in self._blocks([segment]):
                first, last = _id_key(archived.seal.block.first), _id_key(archived.seal.block.last)
                if any(first <= k <= last for k in wanted):
                    found.append(archived.seal)
        return found

    @staticmethod
    def _first_id(segment: Path) -> tuple[int, int] | None:
        with segment.open(encoding="utf-8") as lines:
            line = lines.readline()
        return _id_key(str(json.loads(line)["seal"]["block"]["first"])) if line.endswith("\n") else None

    def blocks(self) -> Iterator[ArchivedBlock]:
        """Every archived block, oldest first."""
        return self._blocks(self._segments())

    def prune(self, before: str) -> list[Path]:
        """Delete the segments whose every block was closed before `before` (ISO 8601 UTC), the newest one
        excepted (the next block follows it); return them."""
        gone = []
        for segment in self._segments()[:-1]:
            last = None
            for block in self._blocks([segment]):
                last = block.seal.block
            if last is not None and last.at < before:
                segment.unlink()
                gone.append(segment)
        return gone

    def first_number(self) -> int:
        """The number the first archived block must have: its segment's first (1 unless pruned)."""
        segments = self._segments()
        return int(segments[0].stem.removeprefix("segment-")) if segments else 1

    def _segments(self) -> list[Path]:
        return sorted(self.path.glob("segment-*.jsonl")) if self.path.is_dir() else []

    @staticmethod
    def _blocks(segments: Sequence[Path]) -> Iterator[ArchivedBlock]:
        for segment in segments:
            with segment.open(encoding="utf-8") as lines:
                for line in lines:
                    if line.endswith("\n"):  # a line being written is not read
                        yield _archived(json.loads(line))


def check_block(last: Block | None, seal: Seal, entries: Sequence[FeedEntry]) -> None:
    """That `seal` follows `last` and that `entries` are what it seals. ArchiveRefused."""
    block = seal.block
    if last is not None and (block.number, block.prev) != (last.number + 1, last.digest()):
        raise ArchiveRefused(f"block {block.number} does not follow block {last.number} of the archive")
    leaves = [leaf_hash(entry.stream, entry.fields) for entry in entries]
    if leaves != [leaf.hash for leaf in seal.leaves] or merkle_root(leaves) != block.root:
        raise ArchiveRefused(f"the entries of block {block.number} are not the entries it seals")


def _archived(value: dict[str, Any]) -> ArchivedBlock:
    return ArchivedBlock(
        seal_from_dict(value["seal"]),
        tuple(FeedEntry(str(i), str(stream), dict(fields)) for i, stream, fields in value["entries"]),
    )


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)

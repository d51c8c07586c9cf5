"""`sesame journal export`: the sealed journal as JSON Lines, block by block, resumable (decision 0035).

Each sealed block is written as its entries, one line each, then its seal, one line:

    {"block": 7, "entry": {"id": "1764500000000-0", "stream": "...", "fields": {...}}}
    {"block": 7, "seal": {"block": {...}, "signature": "...", "leaves": [...]}}

so that a line is a journal entry a reader can filter (`jq`, a log store), and a block is complete once its
seal line is written. Blocks come from the archive first, then from Redis for the blocks sealed and not yet
archived; an entry not sealed yet is not exported (nothing would vouch for it). The cursor is the number of
the last block whose seal line was written: `--after N` starts after it, and `--resume` finds it in the
output file itself (the last seal line), cutting off the entries of a block whose seal line the interruption
lost. An export, whole or interrupted and resumed, checks like the archive (`read_export`, `journal verify
--export`), with the journal keys' JWK set only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from sesame.server import json_once
from sesame.server.domain.errors import ConfigurationError
from sesame.server.domain.journal_seal import FeedEntry, Seal, seal_from_dict, seal_to_dict
from sesame.server.journal_archive import ArchivedBlock, JournalArchive


class LiveSeals(Protocol):
    """What the export reads of the live journal in Redis (`RedisJournal`)."""

    async def seals_from(self, first_id: str) -> list[Seal]:
        """Every seal Redis keeps, oldest first, from the one ending at `first_id` on."""
        ...

    async def sealed_entries(self, seal: Seal) -> list[FeedEntry]:
        """The entries `seal` covers."""
        ...


def entry_line(number: int, entry: FeedEntry) -> str:
    """The JSON line of one entry of block `number`."""
    value = {"block": number, "entry": {"id": entry.id, "stream": entry.stream, "fields": dict(entry.fields)}}
    return _line(value)


def seal_line(seal: Seal) -> str:
    """The JSON line that closes a block: its seal."""
    return _line({"block": seal.block.number, "seal": seal_to_dict(seal)})


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n"


async def blocks_after(
    after: int, archive: JournalArchive | None, live: LiveSeals | None
) -> AsyncIterator[ArchivedBlock]:
    """Every sealed block numbered after `after`, in order: the archive's, then those only Redis holds.
    ConfigurationError when blocks between the two are in neither (decision 0106)."""
    last = after
    if archive is not None:
        for archived in archive.blocks():
            if archived.seal.block.number > last:
                last = archived.seal.block.number
                yield archived
    if live is not None:
        async for block in _live_after(last, archive, live):
            yield block


async def _live_after(
    last: int, archive: JournalArchive | None, live: LiveSeals
) -> AsyncIterator[ArchivedBlock]:
    """The blocks after `last` that Redis holds, or that the archive took meanwhile."""
    for seal in await live.seals_from("0-0"):
        if seal.block.number <= last or not seal.leaves:  # a head kept without its leaves is archived
            continue
        entries = tuple(await live.sealed_entries(seal))
        if seal.block.number > last + 1 or len(entries) != seal.block.count:
            # The sealer archived blocks (and Redis let them go) while the archive was being read: the
            # archive has them now.
            for archived in _archived_between(archive, last, seal.block.number + 1):
                last = archived.seal.block.number
                yield archived
            if last >= seal.block.number:
                continue
            if seal.block.number > last + 1:
                # In neither place (an archive directory that is not this deployment's, one restored without
                # its latest segments): the export stops, it never skips blocks without a word.
                raise ConfigurationError(
                    f"blocks {last + 1} to {seal.block.number - 1} are neither in the archive nor in Redis"
                    f" (is --archive this deployment's?): the export stops after block {last}"
                )
        last = seal.block.number
        yield ArchivedBlock(seal, entries)


def _archived_between(archive: JournalArchive | None, after: int, before: int) -> Iterator[ArchivedBlock]:
    """The archived blocks numbered after `after` and before `before`."""
    if archive is None:
        return
    for archived in archive.blocks():
        if after < archived.seal.block.number < before:
            yield archived


class Progress:
    """A progress bar on standard error when it is a terminal (and the export is large), else silent."""

    WIDTH = 30
    LARGE = 100  # blocks: fewer finish before a bar would be read
    EVERY = 0.2  # seconds between two redraws

    def __init__(self, stream: IO[str], total: int) -> None:
        self._stream = stream
        self._total = total
        self._shown = stream.isatty() and total >= self.LARGE
        self._drawn_at = 0.0

    def step(self, done: int) -> None:
        """Redraw after `done` blocks, at most every EVERY seconds (and at the last one)."""
        now = time.monotonic()
        if not self._shown or (now - self._drawn_at < self.EVERY and done < self._total):
            return
        self._drawn_at = now
        filled = self.WIDTH * min(done, self._total) // max(self._total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._stream.write(f"\r[{bar}] {done}/{self._total} blocks")
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote: blocks and entries, and the cursor to resume after."""

    blocks: int
    entries: int
    last_block: int


async def export(
    blocks: AsyncIterator[ArchivedBlock], out: IO[str], progress: Progress, after: int
) -> Exported:
    """Write each block's entries then its seal; flushed after each seal, so an interruption loses at most
    the block being written (which `--resume` drops)."""
    count = entries = 0
    last = after
    async for archived in blocks:
        number = archived.seal.block.number
        for entry in archived.entries:
            out.write(entry_line(number, entry))
        out.write(seal_line(archived.seal))
        out.flush()
        count, entries, last = count + 1, entries + len(archived.entries), number
        progress.step(count)
    progress.close()
    return Exported(count, entries, last)


def resume_point(path: Path) -> int:
    """The last block whose seal line `path` holds (0 when none), the file cut just after that line."""
    if not path.exists():
        return 0
    last, keep = 0, 0
    with path.open("rb") as lines:
        offset = 0
        for raw in lines:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break  # a line cut by the interruption
            value = json.loads(raw)
            if "seal" in value:
                last, keep = int(value["block"]), offset
    with path.open("r+b") as out:
        out.truncate(keep)
        os.fsync(out.fileno())
    return last


class MislabelledLine(ValueError):
    """A line of an export whose `block` is not the block its seal line closes."""


def _label(block: object) -> object:
    """A line's `block` as compared: an integer is itself; `true` or `2.0`, which Python counts equal to 1
    and 2, are no block number (a second outside audit's), and match none."""
    return block if type(block) is int else ("not a block number", repr(block))


def read_export(lines: Iterable[str]) -> Iterator[ArchivedBlock]:
    """The blocks of an export, each once its seal line is read. ValueError on a line that is not an
    export's, one that names a key twice, and entry lines after the last seal line (an export interrupted
    and not resumed, or cut, or added to)."""
    pending: list[FeedEntry] = []
    labels: set[object] = set()  # the `block` of each entry line pending, which its seal line must have
    for line in lines:
        if not line.strip():
            continue
        value = json_once.loads(line)
        if "entry" in value:
            entry = value["entry"]
            pending.append(FeedEntry(str(entry["id"]), str(entry["stream"]), dict(entry["fields"])))
            labels.add(_label(value["block"]))
        elif "seal" in value:
            seal = seal_from_dict(value["seal"])
            # A line's `block` is what a reader groups by: one that names another block than the seal that
            # covers it verified all the same (an outside audit), a layout the file did not prove.
            if labels | {_label(value["block"])} != {seal.block.number}:
                raise MislabelledLine(f"block {seal.block.number}: a line of it is labelled another block")
            yield ArchivedBlock(seal, tuple(pending))
            pending, labels = [], set()
        else:
            raise ValueError("a line of an export holds an entry or a seal")
    if pending:
        # An export writes a block's entries and its seal line together: lines after the last seal are a cut
        # or an edit, and a reader of the file would take them as journal (an outside audit: verified).
        raise MislabelledLine(f"{len(pending)} entry line(s) after the last seal line, sealed by nothing")

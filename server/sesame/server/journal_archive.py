"""The journal's archive (docs/decisions/0027, issue 8 item 2): sealed blocks in append-only segment files.

Redis is the live journal, not the archive. The sealer drains each sealed block, in order and verified
(its entries give its leaves and root, it follows the last block archived), into the current segment file,
one JSON line per block (the seal and its entries), flushed and fsync'ed before Redis lets the block go.
A segment holds SEGMENT_BLOCKS blocks, then the next one starts (`segment-<first block number>.jsonl`). Only
the sealer holding the lease writes; evidence reads the complete lines of every segment. A writer holds the
archive's lock file while it writes a line or cuts a torn one, and writes only where it saw the archive end: a
sealer resumed after its lease lapsed (another holder archived meanwhile) is refused, and never cuts or
doubles the other's lines (decision 0078).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sesame.server import json_once
from sesame.server.domain.errors import ConfigurationError, SesameError
from sesame.server.domain.journal_seal import (
    GENESIS,
    Block,
    Closed,
    FeedEntry,
    Seal,
    holds_any,
    id_key,
    leaf_hash,
    merkle_root,
    seal_from_dict,
    seal_to_dict,
)
from sesame.server.journal_index import JournalIndex, Located

SEGMENT_BLOCKS = 10_000  # blocks per segment file: at one block a second, about three hours
LOCK_FILE = "archive.lock"  # held (flock) by the one writing a line or cutting a torn one
LOCK_WAIT_SECONDS = 2.0  # how long a writer waits for another's line before it gives up (retried next step)


class MalformedArchive(ValueError):
    """A line of a segment that is not an archived block: the archive was edited or damaged."""


class ArchiveChanged(ConfigurationError):
    """A block is not where the archive's index says it is: a segment was changed in place."""

    said_in_log = True  # a block number, a segment's name, an offset


class ArchiveUnreadable(ConfigurationError):
    """The archive could not be read (its index failing, a segment gone): the OS's or SQLite's message."""

    said_in_log = True  # a file's name, SQLite's or the OS's words


@contextlib.contextmanager
def _read_for_a_caller() -> Iterator[None]:
    """A read the RPCs make (GetProof, the evidence): an OSError (an `IndexFailed`, a segment gone) becomes
    `ArchiveUnreadable`, answered INTERNAL with an ERROR once a minute per method; it was an unexpected
    failure, a traceback logged for every call (an outside audit, AW)."""
    try:
        yield
    except OSError as exc:
        raise ArchiveUnreadable(f"the journal archive cannot be read: {exc}") from exc


class ArchiveRefused(SesameError):
    """A block that does not follow the archive, or whose entries do not give its seal: not archived."""


@dataclass(frozen=True, slots=True)
class ArchivedBlock:
    """One line of a segment: a seal and the entries it seals."""

    seal: Seal
    entries: tuple[FeedEntry, ...]


def private(path: str, flags: int) -> int:
    """Open (or create) a file of the archive owner-only: its entries name users, their payees' IBANs, IPs and
    devices, and it was made world-readable (0644 in a 0755 directory) under the usual umask."""
    return os.open(path, flags, 0o600)


class JournalArchive:
    """Segment files under one directory (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index = JournalIndex(path)
        self._last: Block | None = None
        self._read_last = False
        # The last line this process knows indexed, every line before it too: catch_up_index() reads on from
        # it instead of parsing the whole current segment at every drain (decision 0039).
        self._indexed_to: Located | None = None
        self._indexed_end = 0  # where the line after it starts: a catch-up reads from there (decision 0048)
        # Where this process saw the archive end (segment, size), when it read the last block or wrote a line:
        # a line is appended only there (decision 0078).
        self._end: tuple[str, int] | None = None
        # The index failed on this process's last line: no line is written before it has caught up, so that
        # its rows never skip a block (a catch-up reads on from the last row: decision 0078).
        self._index_behind = False

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the archive's lock file (waiting LOCK_WAIT_SECONDS at most: OSError when another writer keeps
        it). Released by the kernel when its holder dies, SIGKILL included."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "ab", opener=private) as lock:
            deadline = time.monotonic() + LOCK_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise OSError(errno.EWOULDBLOCK, "the archive is locked by another writer") from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def read_afresh(self) -> None:
        """Forget what this process knew of the files (the last block, where the index stands): another
        sealer may have archived blocks since this one last held the lease (decision 0071)."""
        self._last, self._read_last = None, False
        self._indexed_to, self._indexed_end = None, 0
        self._end = None

    @property
    def known(self) -> bool:
        """Whether the last block is known without reading the files (read, and not read afresh since)."""
        return self._read_last

    def last_block(self) -> Block | None:
        """The last block archived, or None for an empty archive. Read once (and again after `read_afresh`)
        from the end of the newest segment holding a whole line, not by parsing the segment (up to
        SEGMENT_BLOCKS lines of up to a block's entries each). A torn tail, the start of a line that a crash
        or a full disk cut short before its fsync (its block still in Redis, to be archived again), is cut
        off first: the next line appended after it would have made one unreadable line of both."""
        if not self._read_last:
            self._last, self._read_last = self._last_whole_block(), True
        return self._last

    def _last_whole_block(self) -> Block | None:
        for segment in reversed(self._segments()):
            line, end, size = _last_whole_line(segment, cut=False)
            if end < size:  # a torn tail: cut under the lock, never a line another writer is writing
                with self.locked():
                    line, end, _ = _last_whole_line(segment, cut=True)
            if line is not None:
                self._end = (segment.name, end)
                return _archived(json.loads(line)).seal.block
        self._end = ("", 0)
        return None

    def append(self, seal: Seal, entries: Sequence[FeedEntry]) -> None:
        """Archive one sealed block after checking it. ArchiveRefused; OSError when the disk fails."""
        check_block(self.last_block(), seal, entries)
        self._write(seal, entries)

    def append_closed(self, closed: Closed) -> None:
        """Archive a block this process closed, once it follows the archive: its leaves are the hashes of its
        entries by construction (decision 0048), not hashed again. ArchiveRefused; OSError."""
        check_follows(self.last_block(), closed.seal.block)
        self._write(closed.seal, closed.entries)

    def _write(self, seal: Seal, entries: Sequence[FeedEntry]) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        number = seal.block.number
        segment = self.path / f"segment-{number - (number - 1) % SEGMENT_BLOCKS:012d}.jsonl"
        line = json.dumps(
            {"seal": seal_to_dict(seal), "entries": [[e.id, e.stream, _as_dict(e.fields)] for e in entries]},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        data = line.encode() + b"\n"
        if self._index_behind:  # IndexFailed (an OSError) again: nothing written, the sealer retries
            self.catch_up_index()
            self._index_behind = False
        # Unbuffered: a buffered file kept what a full disk refused and wrote it when closed, after the cut
        # below had freed the room, leaving the end of a line as a line of its own (decision 0080).
        with self.locked(), open(segment, "ab", buffering=0, opener=private) as out:
            offset = out.seek(0, os.SEEK_END)
            seen = self._end or ("", 0)
            if offset != (seen[1] if seen[0] == segment.name else 0):
                # Another sealer wrote since this one read the archive (its lease lapsed meanwhile): the block
                # may be there already. Read afresh (the next drain), never append after the other's lines.
                self.read_afresh()
                raise ArchiveRefused(
                    "the archive changed since this sealer read it: another sealer wrote, or it was edited "
                    f"({number})"
                )
            try:
                _write_all(out, data)
                os.fsync(out.fileno())
            except OSError:
                # A full disk or a failing one may have taken part of the line: take it back, so that the
                # block, still in Redis, is appended again whole after the lines before it.
                with contextlib.suppress(OSError):
                    os.truncate(segment, offset)
                raise
            self._end = (segment.name, offset + len(data))
        self._last = seal.block
        # Indexed only once the line is on disk (decision 0037): a crash in between leaves the index behind,
        # and catch_up_index() reads the lines it lacks.
        where = Located(number, segment.name, offset, seal.block.last)
        try:
            self.index.add(where, (e.stream for e in entries))
        except OSError:
            self._index_behind = True
            raise
        if self._indexed_to is not None and self._indexed_to.number == number - 1:
            self._indexed_to, self._indexed_end = where, offset + len(data)

    def catch_up_index(self) -> int:
        """Index the archived blocks the index lacks (a crash between a line and its index); how many.

        From the end of the last line this process saw indexed when the index still ends there (a line after
        it may be another process's, written before a crash: it is read); else from the start of the line the
        index ends at, as the index places it (a process starting, or taking the lease after another sealer
        archived: not the whole current segment, up to SEGMENT_BLOCKS lines, parsed while the worker serves:
        decision 0074); else, without an index, from the segments it may lack.
        """
        indexed, count = self.index.last_number(), 0
        if indexed and (self._indexed_to is None or self._indexed_to.number != indexed):
            found = self.index.between(indexed, indexed)
            self._indexed_to, self._indexed_end = (found[0], found[0].offset) if found else (None, 0)
        mark = self._indexed_to if self._indexed_to and self._indexed_to.number == indexed else None
        for segment in self._segments():
            if mark is not None and segment.name < mark.segment:
                continue
            if int(segment.stem.removeprefix("segment-")) + SEGMENT_BLOCKS <= indexed:
                continue
            start = self._indexed_end if mark is not None and segment.name == mark.segment else 0
            for where, end, block in _located([segment], start):
                if where.number > indexed:
                    self.index.add(where, (e.stream for e in block.entries))
                    count += 1
                self._indexed_to, self._indexed_end = where, end
        return count

    def stream_entries(self, stream: str) -> list[FeedEntry]:
        """The archived entries of `stream`, oldest first, found through the index. ArchiveUnreadable."""
        with _read_for_a_caller():
            places = self.index.holding(stream)
            return [e for block in self._read(places) for e in block.entries if e.stream == stream]

    def _read(self, places: Sequence[Located]) -> Iterator[ArchivedBlock]:
        for where in places:
            with (self.path / where.segment).open("rb") as segment:
                segment.seek(where.offset)
                line = segment.readline()
            try:
                block = _archived(json.loads(line))
            except (ValueError, KeyError, TypeError):
                block = None
            if block is None or block.seal.block.number != where.number:
                # A byte inserted into a line before this one moved every line after it: the sealer stopped
                # archiving with an unexplained JSONDecodeError, and blamed another sealer (an outside audit).
                raise ArchiveChanged(
                    f"block {where.number} is not where the archive's index says ({where.segment}, byte "
                    f"{where.offset}): the archive was changed in place; `sesame journal verify` says where"
                )
            yield block

    def seals_from(self, first_id: str, holding: str = "") -> list[Seal]:
        """The archived seals from the first whose last entry is at or after `first_id`, oldest first: to the
        newest one, or with `holding`, to the last one holding an entry of that stream. Read through the
        index (decision 0037). ArchiveUnreadable."""
        with _read_for_a_caller():
            first = self.index.first_ending_at_or_after(first_id)
            if not first:
                return []
            held = self.index.holding(holding) if holding else []
            last = held[-1].number if held else self.index.last_number()
            if holding and not held:
                return []
            return [block.seal for block in self._read(self.index.between(first, last))]

    def seals_holding(self, ids: Sequence[str], most_leaves: int | None = None) -> list[Seal]:
        """The archived seals whose range of entry ids holds one of `ids`, oldest first (decision 0036): for
        each id, the first block ending at or after it (the index, decision 0037), read if it holds the id.
        With `most_leaves`, no block is read once those read hold more leaves (decision 0145).
        ArchiveUnreadable."""
        wanted = sorted(id_key(i) for i in ids)
        seals, leaves = [], 0
        with _read_for_a_caller():
            numbers = sorted({n for i in ids if (n := self.index.first_ending_at_or_after(i))})
            places = [place for n in numbers for place in self.index.between(n, n)]
            for block in self._read(places):
                if holds_any(block.seal.block, wanted):
                    seals.append(block.seal)
                    leaves += len(block.seal.leaves)
                    if most_leaves is not None and leaves > most_leaves:
                        break
        return seals

    def blocks(self) -> Iterator[ArchivedBlock]:
        """Every archived block, oldest first."""
        return self._blocks(self._segments())

    def prune(self, before: str) -> list[Path]:
        """Delete the segments whose every block was closed before `before` (ISO 8601 UTC), the newest one
        excepted (the next block follows it); return them.

        Each segment's last block only is read, from its end, oldest segment first, and the first segment
        kept ends the search (blocks are archived in order): it read every line of every segment, once an
        hour inside the sealer's step, 0.6 s a full segment, 35 minutes an hour at 13 months' retention
        while nothing was sealed (an outside audit)."""
        gone = []
        for segment in self._segments()[:-1]:
            line = _last_whole_line(segment, cut=False)[0]
            if line is None:
                break
            try:
                last = _archived(json.loads(line)).seal.block
            except (ValueError, TypeError, KeyError) as exc:
                raise MalformedArchive(
                    f"{segment.name}'s last line is not an archived block ({type(exc).__name__})"
                ) from None
            if last.at >= before:
                break
            segment.unlink()
            gone.append(segment)
        self.index.forget(segment.name for segment in gone)
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
                for number, line in enumerate(lines, 1):
                    if line.endswith("\n"):  # a line being written is not read
                        try:
                            # A key named twice is an edit: readers would see two blocks (an outside audit).
                            block = _archived(json_once.loads(line))
                        except (ValueError, TypeError, KeyError) as exc:
                            # Edited or damaged: named, not a traceback (an outside audit's).
                            kind = type(exc).__name__
                            raise MalformedArchive(
                                f"{segment.name} line {number} is not an archived block ({kind})"
                            ) from None
                        yield block


def check_block(last: Block | None, seal: Seal, entries: Sequence[FeedEntry]) -> None:
    """That `seal` follows `last` and that `entries` are what it seals. ArchiveRefused."""
    block = seal.block
    check_follows(last, block)
    leaves = [leaf_hash(entry.stream, entry.fields) for entry in entries]
    if leaves != [leaf.hash for leaf in seal.leaves] or merkle_root(leaves) != block.root:
        raise ArchiveRefused(f"the entries of block {block.number} are not the entries it seals")


def check_follows(last: Block | None, block: Block) -> None:
    """That `block` is the next one after `last` (numbered next, naming its digest), or the journal's first
    block when the archive holds none. ArchiveRefused.

    An archive is never empty once written (pruning keeps its newest segment): an empty directory offered a
    later block is not the journal's archive (its volume not mounted, the mount point empty; another path).
    Taking the block there, Redis let it go, and the real archive lacked it for good once back.
    """
    if last is None:
        if (block.number, block.prev) != (1, GENESIS):
            raise ArchiveRefused(
                f"the archive holds no block, and the journal goes on from block {block.number}: "
                "SESAME_JOURNAL_ARCHIVE_DIR is not the directory its earlier blocks were archived in (its "
                "volume not mounted? another path?); the blocks stay in Redis, unarchived"
            )
        return
    if (block.number, block.prev) != (last.number + 1, last.digest()):
        raise ArchiveRefused(f"block {block.number} does not follow block {last.number} of the archive")


def _as_dict(fields: Mapping[str, str]) -> dict[str, str]:
    """The fields as JSON encodes them: the entry's own dict (they are one, read from Redis or a line), not a
    copy of each of a block's hundreds (decision 0071)."""
    return fields if isinstance(fields, dict) else dict(fields)


def _located(segments: Sequence[Path], start: int = 0) -> Iterator[tuple[Located, int, ArchivedBlock]]:
    """Every complete line of `segments` with where it starts and ends (in the first, from the line at
    `start`)."""
    for segment in segments:
        with segment.open("rb") as lines:
            offset = lines.seek(start)
            start = 0
            for line in lines:
                end = offset + len(line)
                if line.endswith(b"\n"):
                    try:
                        block = _archived(json.loads(line))
                    except (ValueError, KeyError, TypeError):
                        # Read from where the index left off: a byte inserted before moved the lines.
                        raise ArchiveChanged(
                            f"{segment.name} at byte {offset} holds no block where the archive's index left "
                            "off: the archive was changed in place; `sesame journal verify` says where"
                        ) from None
                    number, last = block.seal.block.number, block.seal.block.last
                    yield Located(number, segment.name, offset, last), end, block
                offset = end


_TAIL_CHUNK = 1 << 16  # bytes read at a time from a segment's end


def _write_all(out: io.FileIO, data: bytes) -> None:
    """Write all of `data` to an unbuffered file: a full disk takes part of it (a short write) before it
    refuses the rest (OSError)."""
    view, done = memoryview(data), 0
    while done < len(data):
        done += out.write(view[done:])


def _last_whole_line(segment: Path, *, cut: bool) -> tuple[bytes | None, int, int]:
    """The last line of `segment` that ends with a newline, read backwards from the end (None when it has
    none), where it ends, and the file's size. With `cut`, bytes after the last newline (a torn tail) are cut
    off the file (the size returned is then the end)."""
    with segment.open("rb+" if cut else "rb") as file:
        end = file.seek(0, os.SEEK_END)
        tail, start = b"", end
        while start > 0 and tail.count(b"\n") < 2:  # the newline ending the line, and the one before
            step = min(_TAIL_CHUNK, start)
            start -= step
            file.seek(start)
            tail = file.read(step) + tail
        last_newline = tail.rfind(b"\n")
        whole = start + last_newline + 1  # 0 without a whole line: a first line cut short, an empty segment
        if cut and whole < end:
            file.truncate(whole)
            end = whole
        if last_newline < 0:
            return None, whole, end
        return tail[tail.rfind(b"\n", 0, last_newline) + 1 : last_newline + 1], whole, end


def _archived(value: dict[str, Any]) -> ArchivedBlock:
    return ArchivedBlock(
        seal_from_dict(value["seal"]),
        tuple(FeedEntry(str(i), str(stream), dict(fields)) for i, stream, fields in value["entries"]),
    )

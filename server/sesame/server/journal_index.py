"""Where the archive keeps each block and each stream's entries (docs/decisions/0037): a SQLite file beside
the segment files.

Once a challenge's journal has left Redis, evidence reads it from the archive: the index says which blocks
hold entries of a stream, and where each block's line starts in its segment, so that a reader seeks to those
lines instead of reading every segment. It also gives the blocks from the first to the last one holding a
stream: the seals that cover it. The index is written after the segment's line is fsync'ed, and caught up from
the segments when it lags (a crash between the two); it loses the rows of the segments pruned past the
evidence retention with them. Only the sealer holding the lease writes; every worker reads. SQLite failing (a
full disk, a lock held past the timeout, a file that is not a database) is an `IndexFailed`, an OSError as the
segments' own failures are: the sealer logs it and retries, as for a failing disk (decision 0078).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sesame.server.domain.journal_seal import id_key

INDEX_FILE = "index.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, segment TEXT NOT NULL, offset INTEGER NOT NULL,
  last_ms INTEGER NOT NULL, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS streams (stream TEXT NOT NULL, number INTEGER NOT NULL,
  PRIMARY KEY (stream, number)) WITHOUT ROWID;
"""


class IndexFailed(OSError):
    """SQLite failed on the index file; the message is sqlite3's (no key, no entry)."""


@dataclass(frozen=True, slots=True)
class Located:
    """Where one block's line starts: its segment file's name and the byte offset in it."""

    number: int
    segment: str
    offset: int
    last: str = "0-0"  # the id of the block's last entry


class JournalIndex:
    """The index file of one archive directory (created on first write)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / INDEX_FILE
        self._made = False  # this process made sure of the file's schema (and WAL mode, kept in the file)

    @contextlib.contextmanager
    def _db(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        # The schema is made sure of once per process, not at every block (decision 0048), and again when the
        # file is new (deleted since).
        make = not (self._made and self.path.exists())
        if write:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if make:  # owner-only, as the segments (sqlite makes its -wal and -shm files with the same mode)
                with contextlib.suppress(OSError):
                    os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        try:
            db = sqlite3.connect(self.path, timeout=10)
            try:
                if make:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(_SCHEMA)
                    self._made = True
                with db:
                    yield db
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise IndexFailed(f"the archive's index failed ({exc})") from exc

    def add(self, where: Located, streams: Iterable[str]) -> None:
        """Index one archived block and the streams it holds entries of (again: changes nothing)."""
        with self._db(write=True) as db:
            ms, seq = id_key(where.last)
            db.execute(
                "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?)",
                (where.number, where.segment, where.offset, ms, seq),
            )
            db.executemany(
                "INSERT OR IGNORE INTO streams VALUES (?, ?)",
                [(s, where.number) for s in sorted(set(streams))],
            )

    def last_number(self) -> int:
        """The number of the newest block indexed, 0 when none."""
        if not self.path.exists():
            return 0
        with self._db() as db:
            (number,) = db.execute("SELECT COALESCE(MAX(number), 0) FROM blocks").fetchone()
        return int(number)

    def holding(self, stream: str) -> list[Located]:
        """The blocks holding entries of `stream`, oldest first."""
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute(
                "SELECT b.number, b.segment, b.offset, b.last_ms || '-' || b.last_seq FROM streams s "
                "JOIN blocks b ON b.number = s.number WHERE s.stream = ? ORDER BY b.number",
                (stream,),
            ).fetchall()
        return [Located(int(n), str(s), int(o), str(last)) for n, s, o, last in rows]

    def first_ending_at_or_after(self, entry_id: str) -> int:
        """The number of the first block whose last entry is at or after `entry_id`; 0 when none is."""
        if not self.path.exists():
            return 0
        ms, seq = id_key(entry_id)
        with self._db() as db:
            (number,) = db.execute(
                "SELECT COALESCE(MIN(number), 0) FROM blocks "
                "WHERE last_ms > ? OR (last_ms = ? AND last_seq >= ?)",
                (ms, ms, seq),
            ).fetchone()
        return int(number)

    def between(self, first: int, last: int) -> list[Located]:
        """The blocks numbered `first` to `last`, oldest first."""
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute(
                "SELECT number, segment, offset, last_ms || '-' || last_seq FROM blocks "
                "WHERE number BETWEEN ? AND ? ORDER BY number",
                (first, last),
            ).fetchall()
        return [Located(int(n), str(s), int(o), str(last)) for n, s, o, last in rows]

    def forget(self, segments: Iterable[str]) -> None:
        """Drop the rows of pruned segments."""
        names = sorted(set(segments))
        if not names or not self.path.exists():
            return
        with self._db(write=True) as db:
            for name in names:
                db.execute(
                    "DELETE FROM streams WHERE number IN (SELECT number FROM blocks WHERE segment = ?)",
                    (name,),
                )
                db.execute("DELETE FROM blocks WHERE segment = ?", (name,))

"""The `sesame journal export` command, and the reading of an export for `journal verify --export`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sesame.clients.redis_connect import connect
from sesame.clients.redis_journal import RedisJournal
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_lane import close_lane
from sesame.clients.redis_scripts import Scripts
from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError, SesameError
from sesame.server.journal_archive import ArchivedBlock, JournalArchive, private
from sesame.server.journal_export import (
    Exported,
    MislabelledLine,
    Progress,
    blocks_after,
    export,
    read_export,
    resume_point,
)


class MalformedExport(SesameError):
    """A line of an export file that no export writes."""


def archive_named(args: argparse.Namespace, settings: Settings, *, empty_ok: bool = False) -> JournalArchive:
    """The archive `--archive` names, else SESAME_JOURNAL_ARCHIVE_DIR's. A directory that does not exist is
    an error, never an empty archive: a mistyped path read as `verified 0 blocks` would reassure wrongly. So
    is one that holds no segment (the var directory above the archive, a copy's parent: decision 0106),
    unless `empty_ok` (an export that also reads Redis, whose first blocks may not be archived yet)."""
    path = Path(args.archive) if args.archive else settings.journal_archive_dir
    if not path.is_dir():
        raise ConfigurationError(f"no journal archive at {path} (not a directory)")
    if not empty_ok and next(path.glob("segment-*.jsonl"), None) is None:
        raise ConfigurationError(f"no journal archive at {path} (no segment-*.jsonl in it)")
    return JournalArchive(path)


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    """Export the blocks after the cursor; the cursor to resume from is printed on standard error."""
    url = None if args.archive_only else (args.redis or settings.redis_url)
    archive = archive_named(args, settings, empty_ok=url is not None)
    output = Path(args.output) if args.output else None
    after = args.after
    if args.resume:
        if output is None:
            raise ConfigurationError("--resume continues an --output file")
        after = resume_point(output)
    try:
        done = asyncio.run(_export(archive, url, settings.redis_shards, (output, args.resume), after))
    except OSError as exc:
        raise ConfigurationError(f"the export cannot be written ({exc.strerror})") from None
    print(  # noqa: T201
        f"exported {done.blocks} blocks, {done.entries} entries after block {after}; "
        f"next: --after {done.last_block}",
        file=sys.stderr,
    )
    return 0


async def _export(
    archive: JournalArchive, url: str | None, shards: int, output: tuple[Path | None, bool], after: int
) -> Exported:
    """Export to `output` (the file, or standard output, and whether to append), opened once the sources
    answered: opened first, an export refused because Redis could not be reached had already emptied the
    file an earlier export wrote there (decision 0108)."""
    client = None if url is None else connect(url, timeout=10)
    try:
        live = None if client is None else RedisJournal(client, Keyspace(shards=shards), Scripts(client))
        newest = archive.last_block()
        last = newest.number if newest is not None else 0
        if live is not None:
            head = await live.last_seal()
            last = max(last, head.block.number if head is not None else 0)
        progress = Progress(sys.stderr, max(0, last - after))
        with _opened(output[0], append=output[1]) as out:
            return await export(blocks_after(after, archive, live), out, progress, after)
    finally:
        if client is not None:
            await close_lane(client)
            await client.aclose()


@contextlib.contextmanager
def _opened(output: Path | None, *, append: bool) -> Iterator[IO[str]]:
    if output is None:
        yield sys.stdout
        return
    # Owner-only, as the archive (an export was written 0644: an outside audit), an existing file too (its
    # mode is kept by an open that does not create it).
    with open(output, "a" if append else "w", encoding="utf-8", opener=private) as out:
        os.fchmod(out.fileno(), 0o600)
        yield out


@dataclass(frozen=True, slots=True)
class ExportFile:
    """The blocks of an export file, and the number its first block has."""

    blocks: Iterator[ArchivedBlock]
    first_number: int


@contextlib.contextmanager
def exported_blocks(path: Path) -> Iterator[ExportFile]:
    """The blocks of the export at `path`. ConfigurationError when it cannot be read; MalformedExport."""
    try:
        with path.open(encoding="utf-8") as lines:
            blocks = _checked(read_export(lines))
            first = next(blocks, None)
            if first is None:
                yield ExportFile(iter(()), 1)
                return
            yield ExportFile(itertools.chain([first], blocks), first.seal.block.number)
    except OSError as exc:
        raise ConfigurationError(f"--export cannot be read ({exc.strerror})") from None


def _checked(blocks: Iterator[ArchivedBlock]) -> Iterator[ArchivedBlock]:
    """The blocks, a malformed line turned into MalformedExport (a damaged file is a broken journal)."""
    try:
        yield from blocks
    except MislabelledLine as exc:
        raise MalformedExport(str(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedExport(f"a line is not an export's ({type(exc).__name__})") from None

"""What Redis writes to its append-only file, by command and kind of key: the bytes a workload costs the disk.

Redis 7 propagates a script's effects, each write command it ran (in a MULTI/EXEC), to the AOF in RESP, as
sent. The AOF's size is what the disk takes per operation (written every second, fsync'ed by a background
thread) and what brings the next rewrite: Redis rewrites the file when it has doubled since the last one
(from 64 MB), and a rewrite forks and takes a core while it writes the whole dataset (docs/benchmarks.md,
`redis_costs.persistence`). `census` reads the incremental files a manifest names and sums each command's
bytes (its whole RESP array) by command and kind of key (`bench.redis_census.kind_of`: tags, ids, digests
and the bench's users folded).

    python -m bench.aof_census <redis dir>/appendonlydir --ops 600
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.redis_census import kind_of

_UNKEYED = frozenset({b"multi", b"exec", b"select"})


@dataclass
class AofCensus:
    """Bytes and counts of the AOF's commands, by (command, kind of its first key)."""

    sizes: Counter[tuple[str, str]] = field(default_factory=Counter)
    commands: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        """Every command's bytes."""
        return sum(self.sizes.values())

    def add(self, data: bytes) -> None:
        """Count the RESP commands in `data` (an AOF's incremental file, whole)."""
        at = 0
        while at < len(data):
            start = at
            at, args = _command(data, at)
            name = args[0].lower()
            kind = "" if name in _UNKEYED or len(args) < 2 else kind_of(args[1])
            self.sizes[(name.decode(), kind)] += at - start
            self.commands[(name.decode(), kind)] += 1


def _command(data: bytes, at: int) -> tuple[int, list[bytes]]:
    """The RESP array at `at` (`*<n>`, then n bulk strings): where the next one starts, and its strings."""
    if data[at : at + 1] != b"*":
        raise ValueError(f"not a RESP array at byte {at}")
    end = data.index(b"\r\n", at)
    count, at = int(data[at + 1 : end]), end + 2
    args = []
    for _ in range(count):
        end = data.index(b"\r\n", at)
        length, at = int(data[at + 1 : end]), end + 2
        args.append(data[at : at + length])
        at += length + 2
    return at, args


def incremental_files(directory: Path) -> list[Path]:
    """The incremental files the manifest of an `appendonlydir` names, in order."""
    manifest = next(directory.glob("*.manifest"))
    files = []
    for line in manifest.read_text().splitlines():
        words = line.split()
        if words and dict(zip(words[::2], words[1::2], strict=False)).get("type") == "i":
            files.append(directory / words[1])
    return files


def census(directory: Path) -> AofCensus:
    """The commands of every incremental file of `directory` (an `appendonlydir`)."""
    counted = AofCensus()
    for path in incremental_files(directory):
        counted.add(path.read_bytes())
    return counted


def lines(counted: AofCensus, ops: int, top: int = 20) -> list[str]:
    """The total and the `top` (command, kind) by bytes, per operation."""
    shown = [f"AOF: {counted.total / ops:.0f} B per operation in all"]
    for (name, kind), size in counted.sizes.most_common(top):
        shown.append(f"{size / ops:8.0f} B {counted.commands[(name, kind)] / ops:6.2f}x  {name:12} {kind}")
    return shown


def main() -> None:
    """Print an AOF's bytes per operation by command and kind of key."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, help="the Redis's appendonlydir")
    parser.add_argument("--ops", type=int, default=1, help="operations the AOF holds, to divide by")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    print("\n".join(lines(census(args.directory), max(args.ops, 1), args.top)))


if __name__ == "__main__":
    main()

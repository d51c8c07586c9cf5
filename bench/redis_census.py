"""What Redis holds, key by key, as `MEMORY USAGE <key> SAMPLES 0` counts it, summed by kind of key.

INFO memory's `used_memory` moves by steps that no one flow causes: the main and expires dictionaries
double their tables (a step of 1-2 MB for a few thousand flows), the allocator keeps freed pages, the
streams' nodes are preallocated. A census counts what the keys hold, their names included, as
tests/e2e/test_memory_per_flow.py bounds it, and tells apart what stays for the retention window from what
leaves within the hour (the send budgets' units, whose windows are a minute or an hour, and the send holds,
kept while their challenge is open): a key is *kept* when it has no expiry or expires in more than an hour.
`bench.load` reports both counts beside `used_memory` (docs/benchmarks.md, "Memory per flow").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import redis

_TAG = re.compile(rb"\{[^}]*\}")
_ID = re.compile(rb"[0-9a-f]{32}\.k\d+\.d\d+\.u[0-9a-f]{16}")
_DIGEST = re.compile(rb"(?<=:)[0-9a-f]{20,}(?=:|$)")  # a hashed phone, a caller's or a hold's digest
_USER = re.compile(rb"(?<=:)bench-\d+-\d+(?=:|$)")  # the bench's users (bench/phases.py names them)
_BATCH = 1000  # keys per pipelined round of MEMORY USAGE
HOUR_MS = 3_600_000  # a key expiring sooner is not kept for the retention window


@dataclass(frozen=True, slots=True)
class Kind:
    """The keys of one kind: the bytes they hold and whether any of them stays past the hour."""

    bytes: int
    kept: bool


def kind_of(key: bytes) -> str:
    """The key with its hash tag, challenge id, digests and bench users left out: `sesame:{}:ch:<id>`."""
    kind = _USER.sub(b"<user>", _DIGEST.sub(b"<digest>", _ID.sub(b"<id>", _TAG.sub(b"{}", key))))
    return kind.decode(errors="replace")


def census(url: str) -> dict[str, Kind]:
    """Every key of the Redis at `url` by kind (SCAN, then MEMORY USAGE and PTTL pipelined)."""
    client = redis.Redis.from_url(url)
    kinds: dict[str, Kind] = {}
    try:
        keys = list(client.scan_iter(count=_BATCH))
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.memory_usage(key, samples=0)
                pipe.pttl(key)
            answers = pipe.execute()
            for key, size, ttl in zip(batch, answers[::2], answers[1::2], strict=True):
                if size is None:
                    continue  # expired between the SCAN and the MEMORY USAGE
                name, kept = kind_of(key), ttl == -1 or ttl > HOUR_MS
                known = kinds.get(name, Kind(0, kept=False))
                kinds[name] = Kind(known.bytes + int(size), known.kept or kept)
    finally:
        client.close()
    return kinds


def grown(before: dict[str, Kind], after: dict[str, Kind]) -> dict[str, Kind]:
    """Bytes gained by each kind from `before` to `after` (kept if kept at either), biggest change first,
    unchanged kinds left out."""
    gone = Kind(0, kept=False)
    change = {
        name: Kind(after.get(name, gone).bytes - before.get(name, gone).bytes,
                   after.get(name, gone).kept or before.get(name, gone).kept)
        for name in before.keys() | after.keys()
    }  # fmt: skip
    return dict(sorted(((k, v) for k, v in change.items() if v.bytes), key=lambda kv: -abs(kv[1].bytes)))

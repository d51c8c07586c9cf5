"""The sealed journal (docs/decisions/0027): leaves, Merkle roots, blocks, and what checking them finds.

Every journal entry carries `seq` (its number in its stream) and `prev` (its predecessor's id), added by
`_journal.lua`. The sealer takes the entries appended since the last seal, hashes each (SHA-256 over its
stream's name and its fields, canonical JSON: the leaf), computes the Merkle root of the leaves (RFC 6962),
and closes a block: its number, the ids of its first and last entries, the time, the root, the digest of the
previous block, and the journal key that signs it in the HSM (`sesame-journal-v<N>`). Each block names the
one before it, so the seals form a chain; each leaf names its stream and `seq`, so a sealed entry that is
missing, or differs, is found; and the `seq` of the entries left in a stream shows a gap where one was
deleted, even before it was sealed.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

GENESIS = "0" * 64  # the `prev` of the first block
_LEAF, _NODE = b"\x00", b"\x01"  # RFC 6962 domain separation: a leaf never hashes like an inner node
# One encoder for every leaf: json.dumps with options builds a new one per call (decision 0048).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the one byte form of a leaf or a block."""
    return _CANONICAL.encode(value).encode()


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("ms-seq", or "ms") as the pair that orders it: Redis orders ids by their numbers,
    not their text ("10-0" comes after "9-0")."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def holds_any(block: Block, keyed: Sequence[tuple[int, int]]) -> bool:
    """Whether `block`'s range of entry ids holds one of `keyed` (sorted `id_key`s): a bisection, not a scan.
    A scan of the keys per block cost 10,000 x 10,000 / 2 comparisons for a user with 10,000 challenges,
    each in its own block: a GetUserEvidence of 25 s (decision 0143)."""
    first = bisect.bisect_left(keyed, id_key(block.first))
    return first < len(keyed) and keyed[first] <= id_key(block.last)


def leaf_hash(stream: str, fields: Mapping[str, str]) -> str:
    """The hex SHA-256 leaf of one journal entry, as stored in its stream (chain fields included)."""
    # The entry's own dict when it is one (as read from Redis or a line): a copy only for another mapping.
    as_dict = fields if isinstance(fields, dict) else dict(fields)
    return hashlib.sha256(_LEAF + canonical([stream, as_dict])).hexdigest()


def merkle_root(leaves: Sequence[str]) -> str:
    """The RFC 6962 Merkle tree hash over hex leaf hashes (already leaf-hashed), as hex.

    Level by level, each pair of nodes hashed together and an odd last node carried up as it is: the same
    root as RFC 6962's split at the largest power of two below the count (the left part is a perfect tree,
    every level of it even, so the pairs never cross the split), without a recursive call and two list
    slices per node (decision 0071)."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    sha256 = hashlib.sha256
    nodes = [bytes.fromhex(leaf) for leaf in leaves]
    while len(nodes) > 1:
        odd = nodes[-1] if len(nodes) % 2 else None
        pairs = iter(nodes)
        # strict=False: an odd last node is left out of the pairs, and carried up below.
        nodes = [sha256(_NODE + left + right).digest() for left, right in zip(pairs, pairs, strict=False)]
        if odd is not None:
            nodes.append(odd)
    return nodes[0].hex()


@dataclass(frozen=True, slots=True)
class Leaf:
    """One sealed entry: its stream, its number there, its hash."""

    stream: str
    seq: int
    hash: str

    def as_list(self) -> list[Any]:
        """The compact form kept with the seal."""
        return [self.stream, self.seq, self.hash]

    @classmethod
    def from_list(cls, value: Sequence[Any]) -> Leaf:
        """The leaf of a compact form. ValueError when it is not one."""
        stream, seq, digest = value
        return cls(str(stream), int(seq), str(digest))


@dataclass(frozen=True, slots=True)
class Block:
    """What a seal signs."""

    number: int
    first: str  # the id of its first entry (in its stream and in the feed)
    last: str  # the id of its last entry: the seal's own id
    at: str  # ISO 8601 UTC, when it was closed
    count: int
    root: str  # hex Merkle root of its leaves
    prev: str  # hex digest of the previous block, GENESIS for the first
    kid: str  # the journal key that signs it

    def payload(self) -> bytes:
        """The bytes the HSM signs (ES256: SHA-256 then ECDSA P-256)."""
        return canonical(asdict(self))

    def digest(self) -> str:
        """The hex SHA-256 of the payload: what the next block names as `prev`."""
        return hashlib.sha256(self.payload()).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes) -> Block:
        """The block of its stored JSON. ValueError when it is not one."""
        value = json.loads(text)
        if not isinstance(value, dict) or set(value) != set(cls.__slots__):
            raise ValueError("not a journal block")
        return cls(**value)


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """A journal entry waiting for its seal: its id, its stream, its fields as stored."""

    id: str
    stream: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Seal:
    """A signed block and its leaves."""

    block: Block
    signature: bytes  # raw r || s
    leaves: tuple[Leaf, ...]


@dataclass(frozen=True, slots=True)
class Closed:
    """A block as the process that closed it holds it: its seal, and the entries whose hashes are its
    leaves (computed from these very values by `close_block`). Archiving it needs no hashing again (0048)."""

    seal: Seal
    entries: tuple[FeedEntry, ...]


def leaves_of(entries: Sequence[FeedEntry]) -> tuple[Leaf, ...]:
    """The leaves of `entries`, in their order: a sealer hashes a busy second's entries a slice at a time."""
    return tuple(
        Leaf(e.stream, int(e.fields.get("seq", "0")), leaf_hash(e.stream, e.fields)) for e in entries
    )


def close_block(
    previous: Block | None,
    entries: Sequence[FeedEntry],
    at: str,
    kid: str,
    leaves: tuple[Leaf, ...] | None = None,
) -> tuple[Block, tuple[Leaf, ...]]:
    """The block that seals `entries` (not empty, in feed order) after `previous`, and its leaves: `leaves`
    when the caller hashed them already (`leaves_of(entries)`, in slices), else hashed here."""
    if leaves is None:
        leaves = leaves_of(entries)
    if len(leaves) != len(entries):
        raise ValueError("one leaf per entry")
    block = Block(
        number=previous.number + 1 if previous else 1,
        first=entries[0].id,
        last=entries[-1].id,
        at=at,
        count=len(leaves),
        root=merkle_root([leaf.hash for leaf in leaves]),
        prev=previous.digest() if previous else GENESIS,
        kid=kid,
    )
    return block, leaves


def seal_to_dict(seal: Seal) -> dict[str, Any]:
    """A seal as JSON data (evidence): the block, the signature in base64url, the leaves."""
    return {
        "block": asdict(seal.block),
        "signature": base64.urlsafe_b64encode(seal.signature).decode().rstrip("="),
        "leaves": [leaf.as_list() for leaf in seal.leaves],
    }


def seal_from_dict(value: Mapping[str, Any]) -> Seal:
    """The seal of its JSON data. ValueError (or KeyError, TypeError) when it is not one."""
    signature = str(value["signature"])
    return Seal(
        Block.from_json(canonical(value["block"])),
        base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
        tuple(Leaf.from_list(leaf) for leaf in value["leaves"]),
    )

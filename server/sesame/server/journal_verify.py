"""`sesame journal verify`: a whole archive checked with the journal keys' JWK set only (decision 0027).

Block by block, in order, stopping at the first broken place, which is named: the block's ES256 signature;
it follows the block before (number, digest; the first block of an archive that was never pruned is number
1 after GENESIS); its entries give its leaves (stream, seq, hash) and its root; entry ids only grow; each
stream's entries are numbered without a gap from 1 (or from where a pruned archive starts) and each names
its predecessor's id as `prev`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sesame.server.domain.journal_seal import GENESIS, Block, FeedEntry, id_key, leaf_hash, merkle_root
from sesame.server.journal_archive import ArchivedBlock
from sesame.server.journal_check import unsigned


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """What checking an archive found."""

    valid: bool
    failed: str  # "" when valid
    blocks: int
    entries: int


class _Broken(Exception):
    pass


def verify_archive(
    blocks: Iterable[ArchivedBlock], jwks: Mapping[str, Any], first_number: int = 1
) -> ArchiveCheck:
    """Check every archived block in order (see the module). `first_number` is the number the archive's
    first block must have: 1, unless segments were pruned (the first segment's name says where it starts)."""
    walk = _Walk(jwks, first_number)
    try:
        for archived in blocks:
            walk.block(archived)
    except _Broken as broken:
        return ArchiveCheck(False, str(broken), walk.blocks, walk.entries)
    return ArchiveCheck(True, "", walk.blocks, walk.entries)


class _Walk:
    """What the check remembers from one block to the next."""

    def __init__(self, jwks: Mapping[str, Any], first_number: int) -> None:
        self._jwks = jwks
        self._first_number = first_number
        self._previous: Block | None = None
        self._heads: dict[str, tuple[int, str]] = {}  # stream -> (last seq, last id)
        self._last_id = (0, 0)
        self.blocks = self.entries = 0

    def block(self, archived: ArchivedBlock) -> None:
        block, previous = archived.seal.block, self._previous
        where = f"block {block.number}"
        if why := unsigned(archived.seal, self._jwks):
            raise _Broken(f"{where}: {why}")
        if previous is not None:
            broken = (block.number, block.prev) != (previous.number + 1, previous.digest())
        else:
            broken = block.number != self._first_number or (self._first_number == 1) != (
                block.prev == GENESIS
            )
        if broken:
            raise _Broken(
                f"{where}: does not follow {f'block {previous.number}' if previous else 'the start'}"
            )
        leaves = [leaf_hash(e.stream, e.fields) for e in archived.entries]
        if leaves != [leaf.hash for leaf in archived.seal.leaves] or merkle_root(leaves) != block.root:
            raise _Broken(f"{where}: its entries are not the entries it seals")
        named = [(e.stream, int(e.fields.get("seq", "0"))) for e in archived.entries]
        if named != [(leaf.stream, leaf.seq) for leaf in archived.seal.leaves] or len(leaves) != block.count:
            raise _Broken(f"{where}: its leaves do not name its entries")
        for entry in archived.entries:
            self._entry(where, entry)
        self._previous = block
        self.blocks += 1

    def _entry(self, where: str, entry: FeedEntry) -> None:
        this_id = id_key(entry.id)
        if this_id <= self._last_id:
            raise _Broken(f"{where}: entry {entry.id} comes after a later one")
        self._last_id = this_id
        seq, prev = int(entry.fields.get("seq", "0")), entry.fields.get("prev", "")
        known = self._heads.get(entry.stream)
        if known is not None and (seq, prev) != (known[0] + 1, known[1]):
            raise _Broken(f"{where}: {entry.stream} entry {known[0] + 1} is missing or out of place")
        if known is None and self._first_number == 1 and (seq, prev) != (1, "0-0"):
            raise _Broken(f"{where}: {entry.stream} entry 1 is missing")
        self._heads[entry.stream] = (seq, entry.id)
        self.entries += 1

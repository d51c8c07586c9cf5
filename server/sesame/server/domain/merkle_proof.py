"""RFC 6962 inclusion proofs in the journal's signed blocks (docs/decisions/0036).

A block signs the Merkle root of its leaves (`journal_seal.merkle_root`). The audit path of one leaf is the
list of sibling hashes from that leaf up to the root (RFC 6962 §2.1.1, PATH(m, D[n])): with it, the leaf's
index and the tree's size, anyone recomputes the root from the one entry (RFC 9162 §2.1.3.2), and so shows
that the entry is in a signed block without being given the block's other entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sesame.server.domain.journal_seal import merkle_root

_NODE = b"\x01"


def audit_path(leaves: Sequence[str], index: int) -> list[str]:
    """The hex sibling hashes proving leaf `index` of `leaves` (hex leaf hashes), bottom first."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} of {len(leaves)}")
    return _path(list(leaves), index)


def _path(leaves: list[str], index: int) -> list[str]:
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below the count
    if index < split:
        return [*_path(leaves[:split], index), merkle_root(leaves[split:])]
    return [*_path(leaves[split:], index - split), merkle_root(leaves[:split])]


def root_from_path(leaf: str, index: int, size: int, path: Sequence[str]) -> str | None:
    """The root that `leaf` at `index` of a tree of `size` leaves gives with `path`; None when the path
    cannot belong to such a tree (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return None
    fn, sn, node = index, size - 1, bytes.fromhex(leaf)
    for sibling_hex in path:
        sibling = bytes.fromhex(sibling_hex)
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            node = hashlib.sha256(_NODE + sibling + node).digest()
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = hashlib.sha256(_NODE + node + sibling).digest()
        fn, sn = fn >> 1, sn >> 1
    return node.hex() if sn == 0 else None

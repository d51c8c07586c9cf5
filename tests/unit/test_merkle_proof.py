"""RFC 6962 inclusion proofs: each leaf's audit path leads to the root, and nothing else does."""

from __future__ import annotations

import hashlib

import pytest

from sesame.server.domain.journal_seal import merkle_root
from sesame.server.domain.merkle_proof import audit_path, root_from_path
from tests.unit.test_journal_seal import CT_INPUTS

# The inclusion proofs of certificate-transparency's reference tests (leaf index, tree size, path).
CT_PATHS = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (0, 1, []),
]  # fmt: skip


def _leaves(count: int) -> list[str]:
    return [
        hashlib.sha256(b"\x00" + count.to_bytes(2, "big") + bytes([i % 256])).hexdigest()
        for i in range(count)
    ]


@pytest.mark.parametrize(("index", "size", "path"), CT_PATHS)
def test_audit_paths_are_rfc_6962s(index: int, size: int, path: list[str]) -> None:
    leaves = [hashlib.sha256(b"\x00" + data).hexdigest() for data in CT_INPUTS[:size]]
    assert audit_path(leaves, index) == path
    assert root_from_path(leaves[index], index, size, path) == merkle_root(leaves)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_leaf_proves_its_inclusion(size: int) -> None:
    leaves = _leaves(size)
    root = merkle_root(leaves)
    for index in range(size):
        assert root_from_path(leaves[index], index, size, audit_path(leaves, index)) == root


@pytest.mark.parametrize("size", [2, 3, 5, 8, 13])
def test_a_wrong_leaf_index_size_or_path_leads_elsewhere(size: int) -> None:
    leaves = _leaves(size)
    root = merkle_root(leaves)
    for index in range(size):
        path = audit_path(leaves, index)
        other = (index + 1) % size
        assert root_from_path(leaves[other], index, size, path) != root
        assert root_from_path(leaves[index], other, size, path) != root
        # The size alone can give the same root (leaf 0 of 3 and of 4): the check compares it with the
        # block's count (evidence_inclusion).
        if path:
            bent = [*path[:-1], hashlib.sha256(path[-1].encode()).hexdigest()]
            assert root_from_path(leaves[index], index, size, bent) != root
            assert root_from_path(leaves[index], index, size, path[:-1]) != root
    assert root_from_path(leaves[0], size, size, []) is None
    with pytest.raises(ValueError, match="leaf"):
        audit_path(leaves, size)

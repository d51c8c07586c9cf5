"""The sealed journal's pure parts: RFC 6962 Merkle roots, blocks, and what checking a stream finds."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sesame.server.domain import proof
from sesame.server.domain.journal_seal import (
    GENESIS,
    Block,
    FeedEntry,
    Seal,
    close_block,
    id_key,
    merkle_root,
    seal_from_dict,
    seal_to_dict,
)
from sesame.server.domain.model import PublicKey
from sesame.server.journal_check import check_stream

# The Merkle tree test vectors of RFC 6962's reference implementation (certificate-transparency).
CT_INPUTS = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43", bytes(range(0x50, 0x58))]
CT_INPUTS.append(bytes(range(0x60, 0x70)))
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
STREAM = "sesame:{u:0}:ch:x:journal"
KID = "sesame-journal-v1"


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_merkle_roots_are_rfc_6962s(size: int) -> None:
    leaves = [hashlib.sha256(b"\x00" + data).hexdigest() for data in CT_INPUTS[:size]]
    assert merkle_root(leaves) == CT_ROOTS[size]


def _rfc_6962_root(nodes: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, as written: MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    if len(nodes) == 1:
        return nodes[0]
    split = 1 << ((len(nodes) - 1).bit_length() - 1)  # the largest power of two below the count
    return hashlib.sha256(b"\x01" + _rfc_6962_root(nodes[:split]) + _rfc_6962_root(nodes[split:])).digest()


def test_merkle_roots_are_rfc_6962s_definition_for_every_count_up_to_a_block_and_beyond() -> None:
    """The root computed level by level is the recursive definition's for every count from 1 to 1,100
    (odd counts at every level, powers of two and one past them)."""
    leaves = [hashlib.sha256(b"\x00" + n.to_bytes(4, "big")).digest() for n in range(1100)]
    for count in range(1, len(leaves) + 1):
        assert merkle_root([leaf.hex() for leaf in leaves[:count]]) == _rfc_6962_root(leaves[:count]).hex()


class Signer:
    """A software P-256 key standing in for the HSM's journal key (the check needs only its public half)."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        numbers = self._key.public_key().public_numbers()
        public = PublicKey(KID, numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big"))
        self.jwks = proof.jwk_set([public])

    def seal(self, previous: Block | None, entries: list[FeedEntry]) -> Seal:
        block, leaves = close_block(previous, entries, "2026-11-30T18:00:00.000+00:00", KID)
        return Seal(block, self.sign(block.payload()), leaves)

    def sign(self, data: bytes) -> bytes:
        """ES256, raw r || s, as the HSM signs."""
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def journal(count: int) -> list[dict[str, str]]:
    return [
        {"event": "challenge.delivery", "at": f"t{n}", "seq": str(n), "prev": f"{n - 1}-0"}
        for n in range(1, count + 1)
    ]


def sealed(signer: Signer, entries: list[dict[str, str]]) -> list[Seal]:
    """Two blocks: the first two entries, then the rest."""
    feed = [FeedEntry(f"{n}-0", STREAM, fields) for n, fields in enumerate(entries, start=1)]
    first = signer.seal(None, feed[:2])
    return [first, signer.seal(first.block, feed[2:])]


def test_a_clean_stream_checks_and_seals_survive_json() -> None:
    signer, entries = Signer(), journal(5)
    seals = [seal_from_dict(seal_to_dict(seal)) for seal in sealed(signer, entries)]
    assert seals[0].block.prev == GENESIS
    checked = check_stream(STREAM, entries, seals, signer.jwks)
    assert (checked.valid, checked.sealed, checked.seals) == (True, 5, 2)


def test_newer_entries_than_the_last_seal_are_not_a_failure() -> None:
    signer, entries = Signer(), journal(5)
    checked = check_stream(STREAM, entries, sealed(signer, entries[:4]), signer.jwks)
    assert (checked.valid, checked.sealed, checked.entries) == (True, 4, 5)


@pytest.mark.parametrize(
    ("tamper", "failure"),
    [
        ("forged signature", "seal 1: the signature does not verify"),
        ("other key", "seal 1: the signature does not verify"),
        ("replayed seal", "seal 1: does not follow seal 1"),  # the old seal again, in the second place
        ("swapped leaves", "seal 2: its leaves do not give its Merkle root"),
        ("reordered entries", "entry 2 is missing or out of place"),
        ("duplicated entry", "entry 3 is missing or out of place"),
        ("truncated journal", "entry 5 was sealed but is missing"),
        ("edited field", "entry 4 differs from the entry sealed"),
    ],
)
def test_each_tampering_is_named(tamper: str, failure: str) -> None:
    signer, entries = Signer(), journal(5)
    seals = sealed(signer, entries)
    jwks = signer.jwks
    match tamper:
        case "forged signature":
            seals[0] = dataclasses.replace(seals[0], signature=bytes(64))
        case "other key":
            jwks = Signer().jwks
        case "replayed seal":
            seals[1] = seals[0]
        case "swapped leaves":
            seals[1] = dataclasses.replace(seals[1], leaves=tuple(reversed(seals[1].leaves)))
        case "reordered entries":
            entries[1], entries[2] = entries[2], entries[1]
        case "duplicated entry":
            entries.insert(2, entries[1])
        case "truncated journal":
            del entries[-1]
        case "edited field":
            entries[3] = {**entries[3], "event": "challenge.cancel"}
    checked = check_stream(STREAM, entries, seals, jwks)
    assert not checked.valid
    assert checked.failed.startswith(failure)


def test_stream_ids_order_by_their_numbers_not_their_text() -> None:
    """The id of an idle feed's frontier (ms, 2^20 * 4096 + shard) and a later millisecond's first entry."""
    ids = [
        "1700000000010-4294967298",
        "1700000000010-4105",
        "1700000000009-9",
        "1700000000011-2",
        "1700000000010",
    ]
    assert sorted(ids, key=id_key) == [
        "1700000000009-9",
        "1700000000010",
        "1700000000010-4105",
        "1700000000010-4294967298",
        "1700000000011-2",
    ]
    assert id_key("1700000000010-4294967298") == (1700000000010, 4294967298)

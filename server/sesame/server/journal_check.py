"""Checking a journal stream against its seals (docs/decisions/0027), with the journal keys' JWK set only.

In this order, stopping at the first failure, which is named: every seal's ES256 signature verifies under the
journal key its block names; each seal follows the one before it (number and digest); each seal's leaves give
its Merkle root and count; the stream's entries are numbered 1, 2, ... without a gap (a deleted first or
middle entry, sealed or not); every sealed entry of the stream is there and hashes as sealed (a deleted last
entry, an edited one); every entry is sealed, except the newest, appended after the last seal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sesame.server.domain.journal_seal import Leaf, Seal, leaf_hash, merkle_root
from sesame.server.jwk_keys import es256_verifies, key_named, named_twice


@dataclass(frozen=True, slots=True)
class JournalCheck:
    """What checking found: valid, or the first check that failed and where."""

    valid: bool
    failed: str  # "" when valid
    entries: int
    sealed: int  # entries covered by a verified seal
    seals: int

    def as_dict(self) -> dict[str, Any]:
        """For the evidence bundle."""
        return {
            "valid": self.valid,
            "failed": self.failed or None,
            "entries": self.entries,
            "sealed_entries": self.sealed,
            "seals": self.seals,
        }


class _Broken(Exception):
    pass


def check_stream(
    stream: str, journal: Sequence[Mapping[str, str]], seals: Sequence[Seal], jwks: Mapping[str, Any]
) -> JournalCheck:
    """Check one stream's entries (as stored, chain fields included) against the seals that cover it."""
    sealed = 0
    try:
        _check_seals(seals, jwks)
        ours = {leaf.seq: leaf for seal in seals for leaf in seal.leaves if leaf.stream == stream}
        _check_numbering(journal)
        sealed = _check_sealed(stream, journal, ours)
    except _Broken as broken:
        return JournalCheck(False, str(broken), len(journal), sealed, len(seals))
    return JournalCheck(True, "", len(journal), sealed, len(seals))


def _check_seals(seals: Sequence[Seal], jwks: Mapping[str, Any]) -> None:
    for i, seal in enumerate(seals):
        block = seal.block
        if why := unsigned(seal, jwks):
            raise _Broken(f"seal {block.number}: {why}")
        before = seals[i - 1].block if i > 0 else None
        if before is not None and (block.number, block.prev) != (before.number + 1, before.digest()):
            raise _Broken(f"seal {block.number}: does not follow seal {before.number}")
        if len(seal.leaves) != block.count or merkle_root([leaf.hash for leaf in seal.leaves]) != block.root:
            raise _Broken(f"seal {block.number}: its leaves do not give its Merkle root")


def unsigned(seal: Seal, jwks: Mapping[str, Any]) -> str:
    """Why `seal` does not verify with `jwks` ("" when it does): a key the set lacks is said as such, as
    `sesame proof verify` says it, not as a signature that does not verify (a tampering alarm for a JWK set
    saved before a rotation)."""
    if named_twice(jwks, seal.block.kid):
        return f"the JWK set names {seal.block.kid!r} for two different keys"
    if key_named(jwks, seal.block.kid) is None:
        return f"no key {seal.block.kid!r} in the JWK set"
    if not signed(seal, jwks):
        return f"the signature does not verify under {seal.block.kid!r}"
    return ""


def signed(seal: Seal, jwks: Mapping[str, Any]) -> bool:
    jwk = key_named(jwks, seal.block.kid)
    return jwk is not None and es256_verifies(jwk, seal.signature, seal.block.payload())


def _check_numbering(journal: Sequence[Mapping[str, str]]) -> None:
    for expected, entry in enumerate(journal, start=1):
        seq = entry.get("seq", "")
        if seq != str(expected):
            raise _Broken(f"entry {expected} is missing or out of place (found seq {seq or 'none'} there)")


def _check_sealed(stream: str, journal: Sequence[Mapping[str, str]], ours: Mapping[int, Leaf]) -> int:
    present = {int(entry["seq"]): entry for entry in journal}
    for seq in sorted(ours):
        if seq not in present:
            raise _Broken(f"entry {seq} was sealed but is missing")
        if leaf_hash(stream, present[seq]) != ours[seq].hash:
            raise _Broken(f"entry {seq} differs from the entry sealed")
    newest_sealed = max(ours, default=0)
    for seq in present:
        if seq not in ours and seq < newest_sealed:
            raise _Broken(f"entry {seq} is not sealed although later ones are")
    return len(ours)

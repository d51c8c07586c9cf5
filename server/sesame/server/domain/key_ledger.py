"""Key versions are never reused: what the store remembers of the keys, and what a boot makes of it.

A challenge id names the OTP key version its code was derived with, a proof names its signing key. A token
lost and regenerated under the same labels would make every open code read WRONG_CODE (counted against
its user) and old proofs fail under their own `kid`. So the store remembers, for each kind, the highest
version it has seen and a fingerprint of each label; a boot compares the HSM with it (docs/decisions/0015).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sesame.server.domain.model import KeyKind, KeyRef


@dataclass(frozen=True, slots=True)
class KeyPrint:
    """One key the HSM holds, by kind and version, and its fingerprint (no key material)."""

    kind: KeyKind
    version: int
    fingerprint: str  # hex: a MAC of a fixed input (OTP), a hash of the public point (proof, journal)

    @property
    def label(self) -> str:
        """The key's label in the HSM."""
        return KeyRef.of(self.kind, self.version).label


@dataclass(frozen=True, slots=True)
class KeysSeen:
    """What the store saw: the highest version of each kind (0: none) and the fingerprint of each label."""

    highest: Mapping[KeyKind, int] = field(default_factory=dict)
    prints: Mapping[str, str] = field(default_factory=dict)

    def top(self, kind: KeyKind) -> int:
        """The highest version of `kind` ever seen, 0 when none was."""
        return self.highest.get(kind, 0)


def held_top(held: Iterable[KeyPrint], kind: KeyKind) -> int:
    """The highest version of `kind` among `held`, 0 when none is."""
    return max((key.version for key in held if key.kind is kind), default=0)


def lost(seen: KeysSeen, held: Iterable[KeyPrint]) -> dict[KeyKind, int]:
    """The kinds whose newest version seen is missing from the HSM, with that version.

    Data (challenges, proofs) was written under it, so the token is not the one that wrote it.
    """
    keys = list(held)
    return {kind: seen.top(kind) for kind in KeyKind if seen.top(kind) > held_top(keys, kind)}


def replaced(seen: KeysSeen, held: Iterable[KeyPrint]) -> list[str]:
    """The labels the HSM holds with another key than the one the store saw under them."""
    return [key.label for key in held if seen.prints.get(key.label, key.fingerprint) != key.fingerprint]

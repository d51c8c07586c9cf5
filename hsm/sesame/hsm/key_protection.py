"""What protects a key in the token: its attributes, read by `sesame keys list`, at boot and at a rotation.

A secret or private key of Sésame's is served only if its value never was readable or exportable outside the
token: sensitive and always sensitive, not extractable and never extractable. A key that fails is refused
(`KeyExposed`, naming its label, never its value). A key that can still be copied on the token (CKA_COPYABLE
true: made by a build before decision 0079, or on a token older than PKCS#11 2.40) is served, and reported
so that it is rotated. These attributes are read at boot and when a rotation is picked up, never per call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from pkcs11 import Attribute
from pkcs11.exceptions import AttributeTypeInvalid

from sesame.hsm.session import TokenSession
from sesame.server.domain.errors import KeyExposed
from sesame.server.domain.model import KeyKind, KeyRef

_log = logging.getLogger("sesame.keys")

# What forbids C_CopyObject on a key Sésame makes (PKCS#11 2.40): a PIN holder could otherwise leave a twin
# behind a key's destruction, or make its label ambiguous (docs/decisions/0079). A token older than 2.40
# refuses the attribute (CKR_ATTRIBUTE_TYPE_INVALID): `KeyAttributeUnsupported`, unless told to omit it.
COPY_PROTECTION: Final[dict[Attribute, Any]] = {Attribute.COPYABLE: False}
P256_BITS: Final = 256


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the token says about one key (attributes only; secret and private values are never readable)."""

    label: str
    version: int
    bits: int
    sensitive: bool
    extractable: bool
    always_sensitive: bool
    never_extractable: bool
    generated_in_hsm: bool
    kind: KeyKind = KeyKind.OTP
    copyable: bool | None = None  # None: the token does not know CKA_COPYABLE (older than PKCS#11 2.40)
    modifiable: bool = False

    def __str__(self) -> str:
        size = f"{self.bits} bits" if self.kind is KeyKind.OTP else "EC P-256"
        copyable = "unknown" if self.copyable is None else self.copyable
        return (
            f"{self.label}  {size}  sensitive={self.sensitive} extractable={self.extractable} "
            f"always_sensitive={self.always_sensitive} never_extractable={self.never_extractable} "
            f"generated_in_hsm={self.generated_in_hsm} copyable={copyable} modifiable={self.modifiable}"
        )

    @property
    def exposures(self) -> tuple[str, ...]:
        """Why the key's value is, or once was, readable or exportable; empty for a key that may be served."""
        found = (
            ("not sensitive", not self.sensitive),
            ("extractable", self.extractable),
            ("not always sensitive", not self.always_sensitive),
            ("once extractable", not self.never_extractable),
        )
        return tuple(reason for reason, true in found if true)

    @property
    def may_be_copied(self) -> bool:
        """Whether C_CopyObject may duplicate the key (CKA_COPYABLE true, or unknown to the token)."""
        return self.copyable is not False


def describe(token: TokenSession, key: KeyRef, kind: KeyKind) -> KeyInfo:
    """The protection attributes of `key`: a secret key (OTP), a private key (proof, journal). HSM thread."""
    if kind is KeyKind.OTP:
        obj = token.secret_key(key.label)
        bits = 8 * int(obj[Attribute.VALUE_LEN])
    else:
        obj, bits = token.private_key(key.label), P256_BITS
    return KeyInfo(
        label=key.label,
        version=key.version(kind),
        bits=bits,
        sensitive=bool(obj[Attribute.SENSITIVE]),
        extractable=bool(obj[Attribute.EXTRACTABLE]),
        always_sensitive=bool(obj[Attribute.ALWAYS_SENSITIVE]),
        never_extractable=bool(obj[Attribute.NEVER_EXTRACTABLE]),
        generated_in_hsm=bool(obj[Attribute.LOCAL]),
        kind=kind,
        copyable=_copyable(obj),
        modifiable=bool(obj[Attribute.MODIFIABLE]),
    )


def refuse_exposed(info: KeyInfo) -> None:
    """KeyExposed if the key's value is or was readable or exportable outside the token."""
    if info.exposures:
        raise KeyExposed(info.label, info.exposures)


def check_rotated(token: TokenSession, rotated: dict[KeyKind, KeyRef]) -> None:
    """Keys that became current while serving: KeyExposed if one is unprotected; a WARNING if copyable."""
    found = [describe(token, key, kind) for kind, key in rotated.items()]
    for info in found:
        refuse_exposed(info)
    if copyable := [info.label for info in found if info.may_be_copied]:
        warn_copyable(copyable)


def warn_copyable(labels: list[str]) -> None:
    """One WARNING naming the keys a PIN holder can still copy, and what to do."""
    _log.warning(
        "HSM keys can still be copied on the token (CKA_COPYABLE not false): %s; rotate them (`sesame keys "
        "rotate --kind otp|proof|journal`) and retire the old versions (docs/operations.md#keys)",
        ", ".join(labels),
    )


def _copyable(obj: Any) -> bool | None:
    try:
        return bool(obj[Attribute.COPYABLE])
    except AttributeTypeInvalid:  # a token older than PKCS#11 2.40
        return None

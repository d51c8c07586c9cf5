"""Key ceremonies: create, rotate and list the OTP and proof keys (`sesame keys init|rotate|list`).

These are synchronous: they run on the process's HSM thread and wait for it. OTP keys are 256-bit generic
secrets generated inside the token, sensitive and non-extractable, usable only to sign and verify (HMAC).
Proof keys are EC P-256 key pairs generated inside the token: the private half sensitive, non-extractable
and good for signing only, the public half readable (it is published as a JWK). Two ceremonies must not run
at the same time on one token (they could pick the same next version).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass

from sesame.hsm.pkcs11 import P256_PARAMS, Pkcs11Config, versions
from sesame.hsm.session import TokenSession, acquire_token, release_token
from sesame.hsm.worker import hsm_worker
from sesame.server.domain.model import KeyKind, KeyRef, key_versions

T = TypeVar("T")

OTP_KEY_BITS = 256

# Every secret key Sésame puts in a token: on the token, behind the login, never readable, never
# exportable (not even wrapped), good for HMAC only.
_SECRET_KEY_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
}

# A proof key pair: the private half behind the login, never readable, never exportable, good for signing
# only; the public half readable by anyone (it is published), good for verifying only.
_PRIVATE_KEY_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
}
_PUBLIC_KEY_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
}
P256_BITS = 256


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

    def __str__(self) -> str:
        size = f"{self.bits} bits" if self.kind is KeyKind.OTP else "EC P-256"
        return (
            f"{self.label}  {size}  sensitive={self.sensitive} extractable={self.extractable} "
            f"always_sensitive={self.always_sensitive} never_extractable={self.never_extractable} "
            f"generated_in_hsm={self.generated_in_hsm}"
        )


@dataclass(frozen=True, slots=True)
class CurrentKeys:
    """The keys new challenges and new proofs use."""

    otp: KeyRef
    proof: KeyRef
    journal: KeyRef


def init_keys(config: Pkcs11Config) -> CurrentKeys:
    """Create `sesame-otp-v1`, `sesame-proof-v1` and `sesame-journal-v1` where no key of their kind exists.

    Idempotent.
    """

    def current(token: TokenSession, kind: KeyKind) -> KeyRef:
        held = versions(token, kind)
        return KeyRef.of(kind, held[-1]) if held else _generate(token, KeyRef.of(kind, 1), kind)

    return _on_token(
        config,
        lambda token: CurrentKeys(
            current(token, KeyKind.OTP), current(token, KeyKind.PROOF), current(token, KeyKind.JOURNAL)
        ),
    )


def rotate_keys(config: Pkcs11Config, kind: KeyKind = KeyKind.OTP, *, above: int = 0) -> KeyRef:
    """Create the next version of `kind`, now current; older ones stay (challenges in flight, old proofs).

    The new version is past every label on the token and past `above` (the highest version the store has
    seen: after a lost token, a version is never used twice, docs/decisions/0015).
    """

    def rotate(token: TokenSession) -> KeyRef:
        # Past every label taken, by any object: a retired proof key may keep only its public half.
        taken = key_versions((obj[Attribute.LABEL] for obj in list(token.session.get_objects())), kind)
        return _generate(token, KeyRef.of(kind, max([above, *taken]) + 1), kind)

    return _on_token(config, rotate)


def list_keys(config: Pkcs11Config) -> list[KeyInfo]:
    """Every OTP key then every proof key on the token, oldest first, with its protection attributes."""

    def describe(token: TokenSession) -> list[KeyInfo]:
        return [
            _info(token, KeyRef.of(kind, version), kind)
            for kind in KeyKind
            for version in versions(token, kind)
        ]

    return _on_token(config, describe)


def import_secret(config: Pkcs11Config, label: str, secret: bytes) -> KeyRef:
    """Put known key bytes in the token as a sensitive, non-extractable HMAC key.

    A tool for test vectors (the RFC keys) and for a key ceremony that must load an existing secret; service
    keys are generated in the HSM by `init_keys`/`rotate_keys`. ValueError if the label is taken.
    """

    def create(token: TokenSession) -> KeyRef:
        _refuse_existing(token, label)
        template = {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.LABEL: label,
            Attribute.VALUE: secret,
            **_SECRET_KEY_TEMPLATE,
        }
        token.session.create_object(template)
        token.forget_key(label)
        return KeyRef(label)

    return _on_token(config, create)


def _generate(token: TokenSession, key: KeyRef, kind: KeyKind) -> KeyRef:
    _refuse_existing(token, key.label)
    if kind is not KeyKind.OTP:  # proof and journal keys: EC P-256 key pairs
        parameters = token.session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True
        )
        parameters.generate_keypair(
            store=True,
            label=key.label,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template=_PUBLIC_KEY_TEMPLATE,
            private_template=_PRIVATE_KEY_TEMPLATE,
        )
    else:
        token.session.generate_key(
            KeyType.GENERIC_SECRET,
            OTP_KEY_BITS,
            label=key.label,
            store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            template=_SECRET_KEY_TEMPLATE,
        )
    token.forget_key(key.label)
    return key


def _refuse_existing(token: TokenSession, label: str) -> None:
    # Any object under the label, whatever its class: a key pair and a secret never share a name.
    if list(token.session.get_objects({Attribute.LABEL: label})):
        raise ValueError(f"a key labelled {label!r} already exists in the token")


def _info(token: TokenSession, key: KeyRef, kind: KeyKind) -> KeyInfo:
    if kind is not KeyKind.OTP:
        obj, bits = token.private_key(key.label), P256_BITS
    else:
        obj = token.secret_key(key.label)
        bits = 8 * int(obj[Attribute.VALUE_LEN])
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
    )


def _on_token(config: Pkcs11Config, op: Callable[[TokenSession], T]) -> T:
    """Run one ceremony step on the token's shared session, on the HSM thread, and wait for it."""
    worker = hsm_worker(config.module)

    def run() -> T:
        token = acquire_token(worker, config.token_label, config.pin)
        try:
            return token.call(op)
        finally:
            release_token(token)

    return worker.run(run)

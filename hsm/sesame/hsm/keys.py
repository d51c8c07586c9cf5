"""Key ceremonies: create, rotate and list the OTP keys (`sesame keys init|rotate|list`).

These are synchronous: they run on the process's HSM thread and wait for it. OTP keys are 256-bit generic
secrets generated inside the token, sensitive and non-extractable, usable only to sign and verify (HMAC).
Two ceremonies must not run at the same time on one token (they could pick the same next version).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11.exceptions import NoSuchKey

from sesame.hsm.pkcs11 import Pkcs11Config, otp_versions
from sesame.hsm.session import TokenSession, acquire_token, release_token
from sesame.hsm.worker import hsm_worker
from sesame.server.domain.model import KeyRef

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


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the token says about one OTP key (attributes only; the value is never readable)."""

    label: str
    version: int
    bits: int
    sensitive: bool
    extractable: bool
    always_sensitive: bool
    never_extractable: bool
    generated_in_hsm: bool

    def __str__(self) -> str:
        return (
            f"{self.label}  {self.bits} bits  sensitive={self.sensitive} extractable={self.extractable} "
            f"always_sensitive={self.always_sensitive} never_extractable={self.never_extractable} "
            f"generated_in_hsm={self.generated_in_hsm}"
        )


def init_keys(config: Pkcs11Config) -> KeyRef:
    """Create `sesame-otp-v1` if the token holds no OTP key; return the current key. Idempotent."""

    def init(token: TokenSession) -> KeyRef:
        versions = otp_versions(token)
        return KeyRef.otp(versions[-1]) if versions else _generate(token, KeyRef.otp(1))

    return _on_token(config, init)


def rotate_keys(config: Pkcs11Config) -> KeyRef:
    """Create the next OTP key version, now current; older ones stay for the challenges in flight."""

    def rotate(token: TokenSession) -> KeyRef:
        versions = otp_versions(token)
        return _generate(token, KeyRef.otp(versions[-1] + 1 if versions else 1))

    return _on_token(config, rotate)


def list_keys(config: Pkcs11Config) -> list[KeyInfo]:
    """Every OTP key on the token, oldest first, with its protection attributes."""

    def describe(token: TokenSession) -> list[KeyInfo]:
        return [_info(token, KeyRef.otp(version)) for version in otp_versions(token)]

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


def _generate(token: TokenSession, key: KeyRef) -> KeyRef:
    _refuse_existing(token, key.label)
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
    try:
        token.secret_key(label)
    except NoSuchKey:
        return
    raise ValueError(f"a key labelled {label!r} already exists in the token")


def _info(token: TokenSession, key: KeyRef) -> KeyInfo:
    obj = token.secret_key(key.label)
    return KeyInfo(
        label=key.label,
        version=key.otp_version,
        bits=8 * int(obj[Attribute.VALUE_LEN]),
        sensitive=bool(obj[Attribute.SENSITIVE]),
        extractable=bool(obj[Attribute.EXTRACTABLE]),
        always_sensitive=bool(obj[Attribute.ALWAYS_SENSITIVE]),
        never_extractable=bool(obj[Attribute.NEVER_EXTRACTABLE]),
        generated_in_hsm=bool(obj[Attribute.LOCAL]),
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

"""Key ceremonies: create, rotate and list the OTP and proof keys (`sesame keys init|rotate|list`).

These are synchronous: they run on the process's HSM thread and wait for it. OTP keys are 256-bit generic
secrets generated inside the token, sensitive and non-extractable, usable only to sign and verify (HMAC).
Proof keys are EC P-256 key pairs generated inside the token: the private half sensitive, non-extractable
and good for signing only, the public half readable (it is published as a JWK). No key can be changed, nor
copied on the token (CKA_COPYABLE false, decision 0079). Two ceremonies on one token from one host take
turns (decision 0116): run at once, both picked the same next version and the token held two keys under it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11.exceptions import AttributeTypeInvalid

from sesame.hsm.key_protection import COPY_PROTECTION, KeyInfo
from sesame.hsm.pkcs11 import P256_PARAMS, Pkcs11Config, every_key, signing_versions
from sesame.hsm.session import TokenSession, acquire_token, release_token
from sesame.hsm.worker import hsm_worker
from sesame.server.domain.errors import ConfigurationError, KeyAttributeUnsupported
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
    # Seen, used and destroyed only after login: a session without the PIN could destroy it and put its own
    # under the label (decision 0153).
    Attribute.PRIVATE: True,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
}
# The setting that makes keys without COPY_PROTECTION, named in the error of a token that refuses it.
OMIT_COPYABLE_SETTING: Final = "SESAME_HSM_OMIT_COPYABLE=1"
# How long a ceremony waits for the one under way on the same token (a key is made in well under a second).
CEREMONY_WAIT_SECONDS: Final = 60.0
_CEREMONY_LOCK_PREFIX: Final = "sesame-key-ceremony-"


@dataclass(frozen=True, slots=True)
class CurrentKeys:
    """The keys new challenges and new proofs use."""

    otp: KeyRef
    proof: KeyRef
    journal: KeyRef


class TokenLacksKeys(Exception):
    """`init_keys` on a token that lacks kinds the key ledger saw (a replacement token): nothing made."""

    def __init__(self, lost: Mapping[KeyKind, int]) -> None:
        super().__init__(", ".join(KeyRef.of(kind, version).label for kind, version in lost.items()))
        self.lost = dict(lost)


def init_keys(config: Pkcs11Config, seen: Mapping[KeyKind, int] | None = None) -> CurrentKeys:
    """Create `sesame-otp-v1`, `sesame-proof-v1` and `sesame-journal-v1` where no key of their kind exists.

    Idempotent. `seen`: the highest version of each kind the key ledger saw; a kind the token lacks that it
    saw is TokenLacksKeys, checked in the ceremony's session before any key is made (v1 made again under a
    label the ledger knows another key by was refused only once made).
    """

    def current(token: TokenSession, kind: KeyKind) -> KeyRef:
        held = signing_versions(token, kind)
        return KeyRef.of(kind, held[-1]) if held else _generate(config, token, _next(token, kind, 0), kind)

    def made(token: TokenSession) -> CurrentKeys:
        lost = {kind: top for kind, top in (seen or {}).items() if top and not signing_versions(token, kind)}
        if lost:
            raise TokenLacksKeys(lost)
        return CurrentKeys(
            current(token, KeyKind.OTP), current(token, KeyKind.PROOF), current(token, KeyKind.JOURNAL)
        )

    return _on_token(config, made, makes_keys=True)


def rotate_keys(config: Pkcs11Config, kind: KeyKind = KeyKind.OTP, *, above: int = 0) -> KeyRef:
    """Create the next version of `kind`, now current; older ones stay (challenges in flight, old proofs).

    The new version is past every label on the token and past `above` (the highest version the store has
    seen: after a lost token, a version is never used twice, docs/decisions/0015).
    """

    return _on_token(
        config, lambda token: _generate(config, token, _next(token, kind, above), kind), makes_keys=True
    )


def list_keys(config: Pkcs11Config) -> list[KeyInfo]:
    """Every OTP key then every proof key on the token, oldest first, with its protection attributes."""
    return _on_token(config, every_key)


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
            **_protected(config, _SECRET_KEY_TEMPLATE),
        }
        _refused_attributes(lambda: token.session.create_object(template), template)
        token.forget_key(label)
        return KeyRef(label)

    return _on_token(config, create, makes_keys=True)


def _next(token: TokenSession, kind: KeyKind, above: int) -> KeyRef:
    """The label of the next key of `kind`: past `above` and every label taken, by any object. A retired proof
    key may keep only its public half; a ceremony killed halfway may have left a key it did not finish, which
    is not used (decision 0126): `init` on such a token makes v2, where it failed on v1 for good."""
    taken = key_versions((obj[Attribute.LABEL] for obj in list(token.session.get_objects())), kind)
    return KeyRef.of(kind, max([above, *taken]) + 1)


def _generate(config: Pkcs11Config, token: TokenSession, key: KeyRef, kind: KeyKind) -> KeyRef:
    _refuse_existing(token, key.label)
    if kind is not KeyKind.OTP:  # proof and journal keys: EC P-256 key pairs
        parameters = token.session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True
        )
        private = _protected(config, _PRIVATE_KEY_TEMPLATE)
        _refused_attributes(
            lambda: parameters.generate_keypair(
                store=True,
                label=key.label,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                public_template=_protected(config, _PUBLIC_KEY_TEMPLATE),
                private_template=private,
            ),
            private,
        )
    else:
        secret = _protected(config, _SECRET_KEY_TEMPLATE)
        _refused_attributes(
            lambda: token.session.generate_key(
                KeyType.GENERIC_SECRET,
                OTP_KEY_BITS,
                label=key.label,
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                template=secret,
            ),
            secret,
        )
    token.forget_key(key.label)
    return key


def _protected(config: Pkcs11Config, template: dict[Attribute, Any]) -> dict[Attribute, Any]:
    """`template` and the copy protection, unless the token is told to be too old for it."""
    return template if config.omit_copyable else {**template, **COPY_PROTECTION}


def _refused_attributes(create: Callable[[], object], template: dict[Attribute, Any]) -> None:
    """Run `create`; KeyAttributeUnsupported when the token does not know the copy protection in `template`.

    Every other attribute of our templates is in PKCS#11 2.20, so a refusal of a template holding the copy
    protection is taken as a refusal of it; without it (`omit_copyable`) the library's error goes through.
    Raised outside the `except` block (see `TokenSession.call`: no library traceback chained).
    """
    refused = False
    try:
        create()
    except AttributeTypeInvalid:
        if not COPY_PROTECTION.keys() & template.keys():
            raise
        refused = True
    if refused:
        names = tuple(f"CKA_{attribute.name}" for attribute in COPY_PROTECTION if attribute in template)
        raise KeyAttributeUnsupported(names, OMIT_COPYABLE_SETTING)


def _refuse_existing(token: TokenSession, label: str) -> None:
    # Any object under the label, whatever its class: a key pair and a secret never share a name.
    if list(token.session.get_objects({Attribute.LABEL: label})):
        raise ValueError(f"a key labelled {label!r} already exists in the token")


def _on_token(config: Pkcs11Config, op: Callable[[TokenSession], T], *, makes_keys: bool = False) -> T:
    """Run one ceremony step on the token's shared session, on the HSM thread, and wait for it; a step that
    `makes_keys` first waits for its turn on the token (`_ceremony_turn`)."""
    worker = hsm_worker(config.module)

    def run() -> T:
        token = acquire_token(worker, config.token_label, config.pin)
        try:
            return token.call(op)
        finally:
            release_token(token)

    if not makes_keys:
        return worker.run(run)
    with _ceremony_turn(config):
        return worker.run(run)


@contextlib.contextmanager
def _ceremony_turn(config: Pkcs11Config) -> Iterator[None]:
    """Hold the token's ceremony lock for the block, waiting up to CEREMONY_WAIT_SECONDS for it.

    The next version is read from the token, then made: two processes doing so at once (a rotate run again
    while the first still ran, two operators, replicas booting with a start afresh) both made the same label,
    and every later use of that label failed (MultipleObjectsReturned, `keys list` included). The lock is an
    abstract Unix socket named after the module, the SoftHSM directory and the token label, as the serving
    ports' (dropped by the kernel however its holder dies); it serialises the ceremonies of one host (one
    network namespace), not of several hosts sharing a network HSM (decision 0116).
    """
    where = f"{config.module}\0{os.environ.get('SOFTHSM2_CONF', '')}\0{config.token_label}"
    # Never keyed by the PIN: the name is public (/proc/net/unix), and a PIN is few enough digits to find from
    # an HMAC of it in a second (an outside audit; decision 0157 withdrawn). A local user may still bind it.
    name = f"\0{_CEREMONY_LOCK_PREFIX}{hashlib.sha256(where.encode()).hexdigest()[:32]}"
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        deadline = time.monotonic() + CEREMONY_WAIT_SECONDS
        while True:
            try:
                lock.bind(name)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"another key ceremony on the HSM token {config.token_label!r} (or a process holding "
                    f"its lock, @{name[1:]}) has held it for {CEREMONY_WAIT_SECONDS:.0f} s: nothing was "
                    "made; run this one again once it ended (`sesame keys list` shows what it made)"
                )
            time.sleep(0.02)
        yield
    finally:
        lock.close()

"""Key ceremonies on a real token: init, rotate, list; keys are generated inside and never readable."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from pkcs11 import Attribute
from pkcs11.exceptions import AttributeSensitive, PKCS11Error

from sesame.hsm import keys
from sesame.hsm.keys import CurrentKeys, import_secret, init_keys, list_keys, rotate_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.errors import KeyAttributeUnsupported
from sesame.server.domain.model import KeyKind, KeyRef

pytestmark = pytest.mark.integration

CKR_ACTION_PROHIBITED = 0x1B  # python-pkcs11 0.10 has no class for it: a bare PKCS11Error naming the code


@pytest.fixture
def fresh_token(make_token: Callable[[str], Pkcs11Config]) -> Pkcs11Config:
    """A new empty token for one test."""
    return make_token(f"keys-{secrets.token_hex(4)}")


def test_init_creates_v1_of_each_kind_once(fresh_token: Pkcs11Config) -> None:
    """init on an empty token creates v1 of the OTP, proof and journal keys; init again creates nothing."""
    first = CurrentKeys(KeyRef("sesame-otp-v1"), KeyRef("sesame-proof-v1"), KeyRef("sesame-journal-v1"))
    assert init_keys(fresh_token) == first
    assert init_keys(fresh_token) == first
    assert [info.label for info in list_keys(fresh_token)] == [
        "sesame-otp-v1",
        "sesame-proof-v1",
        "sesame-journal-v1",
    ]


def test_rotate_adds_the_next_otp_version(fresh_token: Pkcs11Config) -> None:
    """Each OTP rotation adds v<N+1>; older keys stay; proof keys are untouched; init returns the newest."""
    init_keys(fresh_token)
    assert rotate_keys(fresh_token) == KeyRef("sesame-otp-v2")
    assert rotate_keys(fresh_token) == KeyRef("sesame-otp-v3")
    listed = [(info.kind, info.version) for info in list_keys(fresh_token)]
    assert listed == [
        (KeyKind.OTP, 1),
        (KeyKind.OTP, 2),
        (KeyKind.OTP, 3),
        (KeyKind.PROOF, 1),
        (KeyKind.JOURNAL, 1),
    ]
    assert init_keys(fresh_token).otp == KeyRef("sesame-otp-v3")


def test_rotate_proof_adds_the_next_proof_version(fresh_token: Pkcs11Config) -> None:
    """A proof rotation adds sesame-proof-v2 beside v1 and leaves the OTP keys alone."""
    init_keys(fresh_token)
    assert rotate_keys(fresh_token, KeyKind.PROOF) == KeyRef("sesame-proof-v2")
    assert [info.label for info in list_keys(fresh_token)] == [
        "sesame-otp-v1",
        "sesame-proof-v1",
        "sesame-proof-v2",
        "sesame-journal-v1",
    ]


def test_rotate_on_an_empty_token_creates_v1(fresh_token: Pkcs11Config) -> None:
    """Rotating a token without OTP keys starts at version 1."""
    assert rotate_keys(fresh_token) == KeyRef("sesame-otp-v1")


def test_list_shows_keys_generated_sensitive_and_non_extractable(fresh_token: Pkcs11Config) -> None:
    """Listed keys, OTP and proof, are 256-bit, generated in the HSM, sensitive and never extractable."""
    init_keys(fresh_token)
    rotate_keys(fresh_token)
    for info in list_keys(fresh_token):
        assert (info.bits, info.sensitive, info.extractable) == (256, True, False)
        assert (info.always_sensitive, info.never_extractable, info.generated_in_hsm) == (True, True, True)
        assert (info.copyable, info.modifiable, info.exposures, info.may_be_copied) == (
            False,
            False,
            (),
            False,
        )


def test_list_of_an_empty_token_is_empty(fresh_token: Pkcs11Config) -> None:
    """A token without our keys lists nothing."""
    assert list_keys(fresh_token) == []


@pytest.mark.parametrize("kind", list(KeyKind))
def test_the_key_value_cannot_be_read(fresh_token: Pkcs11Config, kind: KeyKind) -> None:
    """Reading CKA_VALUE of an OTP key or of a proof private key is refused by the token."""
    current = init_keys(fresh_token)
    store = Pkcs11KeyStore.open(fresh_token)
    try:
        token = store._live()
        if kind is KeyKind.OTP:
            read = lambda: token.secret_key(current.otp.label)[Attribute.VALUE]  # noqa: E731
        else:
            read = lambda: token.private_key(current.proof.label)[Attribute.VALUE]  # noqa: E731
        with pytest.raises(AttributeSensitive):
            store._worker.run(read)
    finally:
        store.close()


def test_a_proof_private_key_signs_only(fresh_token: Pkcs11Config) -> None:
    """The proof private key may sign and nothing else: no decrypt, unwrap or derive, and it cannot change."""
    current = init_keys(fresh_token)
    store = Pkcs11KeyStore.open(fresh_token)
    try:
        token = store._live()
        flags = (Attribute.SIGN, Attribute.DECRYPT, Attribute.UNWRAP, Attribute.DERIVE, Attribute.MODIFIABLE)
        key = store._worker.run(lambda: token.private_key(current.proof.label))
        assert store._worker.run(lambda: [bool(key[flag]) for flag in flags]) == [
            True,
            False,
            False,
            False,
            False,
        ]
    finally:
        store.close()


def _held(store: Pkcs11KeyStore, kind: KeyKind, label: str) -> Any:
    """The OTP key's secret object, or a proof or journal key's private object, via the store's session."""
    token = store._live()
    return store._worker.run(
        lambda: token.secret_key(label) if kind is KeyKind.OTP else token.private_key(label)
    )


def _objects_labelled(store: Pkcs11KeyStore, label: str) -> int:
    """How many objects of any class the token holds under `label`."""
    token = store._live()
    return store._worker.run(lambda: len(list(token.session.get_objects({Attribute.LABEL: label}))))


def _refused_code(store: Pkcs11KeyStore, action: Any) -> int:
    """The PKCS#11 return code with which the token refuses `action` (a bare PKCS11Error names it)."""
    with pytest.raises(PKCS11Error) as caught:
        store._worker.run(action)
    return int(str(caught.value).rsplit(" ", 1)[-1], 16)


@pytest.mark.parametrize("kind", list(KeyKind))
def test_a_key_cannot_be_copied_nor_changed(fresh_token: Pkcs11Config, kind: KeyKind) -> None:
    """CKA_COPYABLE false: C_CopyObject is refused, as a token twin or a session copy; no attribute changes.

    Decision 0079: before it, an empty-template copy left a second token object under the key's label (a twin
    that outlives the key's destruction). Decision 0077 rests on the rest: no session copy of a key, and a
    PIN holder cannot change a key's label or its uses.
    """
    current = init_keys(fresh_token)
    label = {KeyKind.OTP: current.otp, KeyKind.PROOF: current.proof, KeyKind.JOURNAL: current.journal}[kind]
    store = Pkcs11KeyStore.open(fresh_token)
    try:
        key = _held(store, kind, label.label)
        before = _objects_labelled(store, label.label)
        for template in ({}, {Attribute.TOKEN: False}):
            assert _refused_code(store, lambda template=template: key.copy(template)) == CKR_ACTION_PROHIBITED
        assert _objects_labelled(store, label.label) == before
        for attribute, value in ((Attribute.LABEL, "sesame-otp-v99"), (Attribute.DERIVE, True)):
            with pytest.raises(PKCS11Error):  # CKR_ACTION_PROHIBITED too
                store._worker.run(lambda attribute=attribute, value=value: key.__setitem__(attribute, value))
        assert [info.label for info in list_keys(fresh_token)] == [
            "sesame-otp-v1",
            "sesame-proof-v1",
            "sesame-journal-v1",
        ]
    finally:
        store.close()


def test_an_imported_secret_cannot_be_copied_either(fresh_token: Pkcs11Config) -> None:
    """`import_secret` (test vectors, a loaded secret) makes its key with CKA_COPYABLE false too."""
    key = import_secret(fresh_token, "imported-key", b"k" * 32)
    store = Pkcs11KeyStore.open(fresh_token)
    try:
        secret = _held(store, KeyKind.OTP, key.label)
        assert store._worker.run(lambda: secret[Attribute.COPYABLE]) is False
        assert _refused_code(store, lambda: secret.copy({})) == CKR_ACTION_PROHIBITED
    finally:
        store.close()


@pytest.mark.parametrize("kind", list(KeyKind))
def test_a_token_that_refuses_the_copy_protection_gets_no_key(
    fresh_token: Pkcs11Config, kind: KeyKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token answering CKR_ATTRIBUTE_TYPE_INVALID to the copy protection: KeyAttributeUnsupported, no key.

    SoftHSM 2.6 knows CKA_COPYABLE; it does not know CKA_UNIQUE_ID (PKCS#11 3.0), so the copy protection
    is made of that attribute here to get the answer an HSM older than PKCS#11 2.40 gives to CKA_COPYABLE.
    """
    monkeypatch.setattr(keys, "COPY_PROTECTION", {Attribute.UNIQUE_ID: "newer than this token"})
    with pytest.raises(KeyAttributeUnsupported) as caught:
        rotate_keys(fresh_token, kind)
    assert caught.value.attributes == ("CKA_UNIQUE_ID",)
    assert keys.OMIT_COPYABLE_SETTING in str(caught.value)
    assert list_keys(fresh_token) == []


@pytest.mark.parametrize("kind", list(KeyKind))
def test_omit_copyable_makes_keys_the_token_may_copy(fresh_token: Pkcs11Config, kind: KeyKind) -> None:
    """omit_copyable (SESAME_HSM_OMIT_COPYABLE=1) makes keys without it: the token's default, copyable."""
    made = rotate_keys(dataclasses.replace(fresh_token, omit_copyable=True), kind)
    [info] = list_keys(fresh_token)
    assert (info.label, info.copyable, info.may_be_copied, info.exposures) == (made.label, True, True, ())
    store = Pkcs11KeyStore.open(fresh_token)
    try:
        key = _held(store, kind, made.label)
        store._worker.run(lambda: key.copy({}))  # what CKA_COPYABLE false forbids: a twin under the label
        twins = 2 if kind is KeyKind.OTP else 3  # a key pair's public half shares the label
        assert _objects_labelled(store, made.label) == twins
    finally:
        store.close()


async def test_a_new_store_sees_the_rotated_keys(fresh_token: Pkcs11Config) -> None:
    """A store opened after rotations names the new versions as current."""
    init_keys(fresh_token)
    rotate_keys(fresh_token)
    rotate_keys(fresh_token, KeyKind.PROOF)
    store = Pkcs11KeyStore.open(fresh_token)
    try:
        assert await store.current_otp_key() == KeyRef("sesame-otp-v2")
        assert await store.current_proof_key() == KeyRef("sesame-proof-v2")
    finally:
        store.close()

"""Key ceremonies on a real token: init, rotate, list; keys are generated inside and never readable."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from pkcs11 import Attribute
from pkcs11.exceptions import AttributeReadOnly, AttributeSensitive, PKCS11Error

from sesame.hsm.keys import CurrentKeys, init_keys, list_keys, rotate_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.model import KeyKind, KeyRef

pytestmark = pytest.mark.integration


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


@pytest.mark.parametrize("kind", list(KeyKind))
def test_a_key_cannot_be_copied_into_a_session_object_nor_changed(
    fresh_token: Pkcs11Config, kind: KeyKind
) -> None:
    """CKA_MODIFIABLE false: no session copy (C_CopyObject, CKA_TOKEN false) and no attribute change.

    Decision 0077 rests on this: a session copy would skip SoftHSM's file reads at each use, but only keys
    made modifiable can be copied, and a modifiable key lets a PIN holder change its label or its uses.
    """
    current = init_keys(fresh_token)
    store = Pkcs11KeyStore.open(fresh_token)
    try:
        token = store._live()
        label = {KeyKind.OTP: current.otp, KeyKind.PROOF: current.proof, KeyKind.JOURNAL: current.journal}[
            kind
        ]
        key = store._worker.run(
            lambda: token.secret_key(label.label) if kind is KeyKind.OTP else token.private_key(label.label)
        )
        with pytest.raises(AttributeReadOnly):
            store._worker.run(lambda: key.copy({Attribute.TOKEN: False}))
        for attribute, value in ((Attribute.LABEL, "sesame-otp-v99"), (Attribute.DERIVE, True)):
            with pytest.raises(PKCS11Error):  # CKR_ACTION_PROHIBITED, which python-pkcs11 does not name
                store._worker.run(lambda attribute=attribute, value=value: key.__setitem__(attribute, value))
        assert [info.label for info in list_keys(fresh_token)] == [
            "sesame-otp-v1",
            "sesame-proof-v1",
            "sesame-journal-v1",
        ]
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

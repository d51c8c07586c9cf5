"""Key ceremonies on a real token: init, rotate, list; keys are generated inside and never readable."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from pkcs11 import Attribute
from pkcs11.exceptions import AttributeSensitive

from sesame.hsm.keys import init_keys, list_keys, rotate_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.model import KeyRef

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_token(make_token: Callable[[str], Pkcs11Config]) -> Pkcs11Config:
    """A new empty token for one test."""
    return make_token(f"keys-{secrets.token_hex(4)}")


def test_init_creates_v1_once(fresh_token: Pkcs11Config) -> None:
    """init on an empty token creates sesame-otp-v1; init again creates nothing."""
    assert init_keys(fresh_token) == KeyRef("sesame-otp-v1")
    assert init_keys(fresh_token) == KeyRef("sesame-otp-v1")
    assert [info.label for info in list_keys(fresh_token)] == ["sesame-otp-v1"]


def test_rotate_adds_the_next_version(fresh_token: Pkcs11Config) -> None:
    """Each rotation adds v<N+1>; older keys stay; init then returns the newest."""
    init_keys(fresh_token)
    assert rotate_keys(fresh_token) == KeyRef("sesame-otp-v2")
    assert rotate_keys(fresh_token) == KeyRef("sesame-otp-v3")
    assert [info.version for info in list_keys(fresh_token)] == [1, 2, 3]
    assert init_keys(fresh_token) == KeyRef("sesame-otp-v3")


def test_rotate_on_an_empty_token_creates_v1(fresh_token: Pkcs11Config) -> None:
    """Rotating a token without OTP keys starts at version 1."""
    assert rotate_keys(fresh_token) == KeyRef("sesame-otp-v1")


def test_list_shows_keys_generated_sensitive_and_non_extractable(fresh_token: Pkcs11Config) -> None:
    """Listed keys are 256-bit, generated in the HSM, sensitive and never extractable."""
    init_keys(fresh_token)
    rotate_keys(fresh_token)
    for info in list_keys(fresh_token):
        assert (info.bits, info.sensitive, info.extractable) == (256, True, False)
        assert (info.always_sensitive, info.never_extractable, info.generated_in_hsm) == (True, True, True)


def test_list_of_an_empty_token_is_empty(fresh_token: Pkcs11Config) -> None:
    """A token without OTP keys lists nothing."""
    assert list_keys(fresh_token) == []


def test_the_key_value_cannot_be_read(fresh_token: Pkcs11Config) -> None:
    """Reading CKA_VALUE of an OTP key is refused by the token (AttributeSensitive)."""
    key = init_keys(fresh_token)
    store = Pkcs11KeyStore.open(fresh_token)
    try:
        token = store._live()
        with pytest.raises(AttributeSensitive):
            store._worker.run(lambda: token.secret_key(key.label)[Attribute.VALUE])
    finally:
        store.close()


async def test_a_new_store_sees_the_rotated_key(fresh_token: Pkcs11Config) -> None:
    """A store opened after a rotation names the new version as current."""
    init_keys(fresh_token)
    rotate_keys(fresh_token)
    store = Pkcs11KeyStore.open(fresh_token)
    try:
        assert await store.current_otp_key() == KeyRef("sesame-otp-v2")
    finally:
        store.close()

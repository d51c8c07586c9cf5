"""The KeyStore contract, run against the fake (stdlib hmac) and the real adapter (SoftHSM)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from sesame.hsm.keys import import_secret, init_keys, rotate_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.errors import KeyNotFound
from sesame.server.domain.model import KeyRef, MacAlgorithm
from sesame.server.domain.ports import KeyStore
from tests.fakes.keystore import FakeKeyStore

# 64 bytes: SoftHSM refuses HMAC keys shorter than the hash output (KeySizeRange), as RFC 2104 advises.
SECRET = bytes(range(64))
HASHES = {MacAlgorithm.SHA1: "sha1", MacAlgorithm.SHA256: "sha256", MacAlgorithm.SHA512: "sha512"}


@dataclass
class Backend:
    """A key store and the ceremony steps a test needs around it."""

    store: KeyStore
    add_key: Callable[[str, bytes], KeyRef]
    rotate: Callable[[], Awaitable[None]]


@pytest.fixture(scope="session")
def contract_token(make_token: Callable[[str], Pkcs11Config]) -> Pkcs11Config:
    """A token of its own for the contract suite, with a first OTP key."""
    config = make_token("contract")
    init_keys(config)
    return config


def _fake_backend() -> Backend:
    fake = FakeKeyStore()
    fake.add_key("sesame-otp-v1", secrets.token_bytes(32))

    async def rotate() -> None:
        current = await fake.current_otp_key()
        fake.add_key(KeyRef.otp(current.otp_version + 1).label, secrets.token_bytes(32))

    return Backend(fake, fake.add_key, rotate)


@pytest.fixture(params=["fake", pytest.param("softhsm", marks=pytest.mark.integration)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each backend in turn."""
    if request.param == "fake":
        yield _fake_backend()
        return
    config: Pkcs11Config = request.getfixturevalue("contract_token")
    store = Pkcs11KeyStore.open(config)

    async def rotate() -> None:
        rotate_keys(config)
        await store.refresh_otp_key()

    try:
        yield Backend(store, lambda label, secret: import_secret(config, label, secret), rotate)
    finally:
        store.close()


@pytest.fixture
def label() -> str:
    """A key label no other test uses."""
    return f"contract-{secrets.token_hex(6)}"


@pytest.mark.parametrize("algorithm", list(MacAlgorithm))
async def test_mac_is_the_hmac_of_the_data(backend: Backend, label: str, algorithm: MacAlgorithm) -> None:
    """mac() equals the stdlib HMAC of the data under the imported key, for every algorithm."""
    key = backend.add_key(label, SECRET)
    data = b"\x00\x01 sesame \xff"
    assert await backend.store.mac(key, data, algorithm) == hmac.new(SECRET, data, HASHES[algorithm]).digest()


async def test_mac_depends_on_the_data(backend: Backend, label: str) -> None:
    """Two messages give two MACs under the same key."""
    key = backend.add_key(label, SECRET)
    first = await backend.store.mac(key, b"a", MacAlgorithm.SHA256)
    assert first != await backend.store.mac(key, b"b", MacAlgorithm.SHA256)


async def test_mac_under_an_unknown_label_is_key_not_found(backend: Backend) -> None:
    """A label the store does not hold raises KeyNotFound."""
    with pytest.raises(KeyNotFound):
        await backend.store.mac(KeyRef("no-such-key"), b"data", MacAlgorithm.SHA256)


@pytest.mark.parametrize("n", [1, 16, 32, 100])
async def test_random_returns_n_bytes(backend: Backend, n: int) -> None:
    """random(n) returns exactly n bytes."""
    value = await backend.store.random(n)
    assert isinstance(value, bytes)
    assert len(value) == n


async def test_random_values_differ(backend: Backend) -> None:
    """Twenty 16-byte draws are all distinct."""
    draws = {await backend.store.random(16) for _ in range(20)}
    assert len(draws) == 20


async def test_random_refuses_zero_bytes(backend: Backend) -> None:
    """random(0) is a caller error, not an empty string."""
    with pytest.raises(ValueError):
        await backend.store.random(0)


async def test_current_otp_key_is_the_highest_version_after_a_rotation(backend: Backend) -> None:
    """After a rotation the current OTP key is the next version."""
    before = await backend.store.current_otp_key()
    await backend.rotate()
    after = await backend.store.current_otp_key()
    assert after.otp_version == before.otp_version + 1


async def test_the_current_otp_key_computes_macs(backend: Backend) -> None:
    """The key named by current_otp_key() is usable for a 32-byte HMAC-SHA256."""
    key = await backend.store.current_otp_key()
    assert len(await backend.store.mac(key, b"challenge", MacAlgorithm.SHA256)) == 32

"""The KeyStore contract, run against the fake (stdlib hmac, `cryptography`) and the real adapter (SoftHSM).

Signatures are checked here with `cryptography` directly, not with Sésame's code: an independent path.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sesame.hsm.keys import import_secret, init_keys, rotate_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.errors import KeyNotFound
from sesame.server.domain.model import KeyKind, KeyRef, MacAlgorithm, PublicKey
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
    rotate_proof: Callable[[], Awaitable[None]]


@pytest.fixture(scope="session")
def contract_token(make_token: Callable[[str], Pkcs11Config]) -> Pkcs11Config:
    """A token of its own for the contract suite, with a first OTP key and a first proof key."""
    config = make_token("contract")
    init_keys(config)
    return config


def _fake_backend() -> Backend:
    fake = FakeKeyStore()
    fake.add_key("sesame-otp-v1", secrets.token_bytes(32))

    fake.add_proof_key(1)

    async def rotate() -> None:
        current = await fake.current_otp_key()
        fake.add_key(KeyRef.otp(current.otp_version + 1).label, secrets.token_bytes(32))

    async def rotate_proof() -> None:
        current = await fake.current_proof_key()
        fake.add_proof_key(current.version(KeyKind.PROOF) + 1)

    return Backend(fake, fake.add_key, rotate, rotate_proof)


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
        await store.refresh_keys()

    async def rotate_proof() -> None:
        rotate_keys(config, KeyKind.PROOF)
        await store.refresh_keys()

    try:
        yield Backend(store, lambda label, secret: import_secret(config, label, secret), rotate, rotate_proof)
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


def verifies(key: PublicKey, data: bytes, signature: bytes) -> bool:
    """Whether `signature` (raw r || s) is an ES256 signature of `data` under `key`, by `cryptography`."""
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(key.x, "big"), int.from_bytes(key.y, "big"), ec.SECP256R1()
    )
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        numbers.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


async def published(backend: Backend, key: KeyRef) -> PublicKey:
    """The public key the store publishes for `key`."""
    [found] = [public for public in await backend.store.public_keys() if public.kid == key.label]
    return found


async def test_a_signature_verifies_under_the_published_key(backend: Backend) -> None:
    """sign() under the current proof key gives 64 bytes that verify under the key it publishes."""
    key = await backend.store.current_proof_key()
    data = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"
    signature = await backend.store.sign(key, data)
    assert len(signature) == 64
    assert verifies(await published(backend, key), data, signature)


async def test_a_signature_does_not_verify_other_data(backend: Backend) -> None:
    """A signature of one message does not verify another."""
    key = await backend.store.current_proof_key()
    signature = await backend.store.sign(key, b"amount=125000")
    assert not verifies(await published(backend, key), b"amount=125001", signature)


async def test_a_signature_never_verifies_under_another_key(backend: Backend) -> None:
    """After a proof rotation, a signature by the new key does not verify under the old public key."""
    old = await backend.store.current_proof_key()
    await backend.rotate_proof()
    new = await backend.store.current_proof_key()
    signature = await backend.store.sign(new, b"data")
    assert verifies(await published(backend, new), b"data", signature)
    assert not verifies(await published(backend, old), b"data", signature)


async def test_rotation_keeps_every_public_key_published(backend: Backend) -> None:
    """After a proof rotation the new key is current and the old one is still listed, oldest first."""
    before = [key.kid for key in await backend.store.public_keys()]
    await backend.rotate_proof()
    after = [key.kid for key in await backend.store.public_keys()]
    current = await backend.store.current_proof_key()
    assert after == [*before, current.label]
    assert current.version(KeyKind.PROOF) == KeyRef(before[-1]).version(KeyKind.PROOF) + 1


async def test_signing_under_an_unknown_label_is_key_not_found(backend: Backend) -> None:
    """A label the store does not hold raises KeyNotFound."""
    with pytest.raises(KeyNotFound):
        await backend.store.sign(KeyRef.proof(9999), b"data")


async def test_an_otp_key_cannot_sign(backend: Backend) -> None:
    """Keys are typed: signing under an OTP key's label raises KeyNotFound."""
    with pytest.raises(KeyNotFound):
        await backend.store.sign(await backend.store.current_otp_key(), b"data")


async def test_a_proof_key_computes_no_mac(backend: Backend) -> None:
    """Keys are typed: a MAC under a proof key's label raises KeyNotFound."""
    with pytest.raises(KeyNotFound):
        await backend.store.mac(await backend.store.current_proof_key(), b"data", MacAlgorithm.SHA256)

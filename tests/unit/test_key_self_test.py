"""The key self-test refuses missing and damaged keys (over the fake key store)."""

from __future__ import annotations

import pytest

from sesame.hsm.self_test import prove_current_keys
from sesame.server.domain.errors import HsmUnavailable, KeyNotFound
from sesame.server.domain.model import KeyRef, MacAlgorithm, PublicKey
from tests.fakes.keystore import FakeKeyStore


def working() -> FakeKeyStore:
    """A key store with a current OTP key and proof key."""
    keys = FakeKeyStore()
    keys.add_key(KeyRef.otp(1).label, b"k" * 32)
    keys.add_proof_key(1)
    return keys


class SwappedPublicKey(FakeKeyStore):
    """A damaged token: the public key published under the proof key's label is another key's."""

    async def public_keys(self) -> list[PublicKey]:
        """The published points in reverse order: each label shows another key's point."""
        published = await super().public_keys()
        return [
            PublicKey(key.kid, other.x, other.y)
            for key, other in zip(published, reversed(published), strict=True)
        ]


class UnstableMac(FakeKeyStore):
    """A damaged token: the same input MACs differently each time."""

    async def mac(self, key: KeyRef, data: bytes, algorithm: MacAlgorithm) -> bytes:
        """A fresh random MAC each call."""
        await super().mac(key, data, algorithm)
        return await self.random(32)


async def test_working_keys_pass() -> None:
    """A current OTP key that MACs and a proof key that signs verifiably pass."""
    await prove_current_keys(working())


async def test_missing_keys_are_key_not_found() -> None:
    """No OTP key, or no proof key, is KeyNotFound."""
    no_proof = FakeKeyStore()
    no_proof.add_key(KeyRef.otp(1).label, b"k" * 32)
    for keys in (FakeKeyStore(), no_proof):
        with pytest.raises(KeyNotFound):
            await prove_current_keys(keys)


async def test_a_signature_its_public_key_does_not_verify_is_refused() -> None:
    """A proof key whose published public half is another key's fails the self-test."""
    keys = SwappedPublicKey()
    keys.add_key(KeyRef.otp(1).label, b"k" * 32)
    keys.add_proof_key(1)
    keys.add_proof_key(2)
    with pytest.raises(HsmUnavailable):
        await prove_current_keys(keys)


async def test_an_unstable_mac_is_refused() -> None:
    """An OTP key that gives two MACs for one input fails the self-test."""
    keys = UnstableMac()
    keys.add_key(KeyRef.otp(1).label, b"k" * 32)
    keys.add_proof_key(1)
    with pytest.raises(HsmUnavailable):
        await prove_current_keys(keys)

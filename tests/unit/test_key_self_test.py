"""The key self-test refuses missing and damaged keys (over the fake key store)."""

from __future__ import annotations

import pytest

from sesame.hsm.self_test import KeyProof, prove_current_keys
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


class CountingMacs(FakeKeyStore):
    """A key store that counts its MACs (the self-test makes two) and can be damaged."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0
        self.damaged = False  # when set, each MAC is random, as UnstableMac's

    async def mac(self, key: KeyRef, data: bytes, algorithm: MacAlgorithm) -> bytes:
        """The fake's MAC, counted."""
        self.macs += 1
        if self.damaged:
            return await self.random(32)
        return await super().mac(key, data, algorithm)


def counting() -> CountingMacs:
    """A working key store with a current OTP key and proof key, counting MACs."""
    keys = CountingMacs()
    keys.add_key(KeyRef.otp(1).label, b"k" * 32)
    keys.add_proof_key(1)
    return keys


async def test_health_runs_the_self_test_every_few_rounds_not_every_round() -> None:
    """Ten rounds run the self-test once (two MACs); the eleventh runs it again."""
    keys, proof = counting(), KeyProof(every=10)
    for _ in range(10):
        await proof.check(keys)
    assert keys.macs == 2
    await proof.check(keys)
    assert keys.macs == 4


async def test_a_key_damaged_between_self_tests_fails_within_the_rounds_and_until_repaired() -> None:
    """A key damaged after a pass (its label unchanged) fails when the self-test is due, and every round
    after until repaired; the failure is not kept once it passes again."""
    keys, proof = counting(), KeyProof(every=3)
    await proof.check(keys)
    keys.damaged = True
    for _ in range(2):  # rounds 2 and 3: the pass of round 1 still holds
        await proof.check(keys)
    for _ in range(2):  # round 4 (due) and round 5 (a failure is run again)
        with pytest.raises(HsmUnavailable):
            await proof.check(keys)
    keys.damaged = False
    await proof.check(keys)
    assert keys.macs == 8


async def test_a_failed_self_test_is_run_again_at_the_next_round() -> None:
    """A failure is never cached: each round tries again until it passes."""
    keys = UnstableMac()
    keys.add_key(KeyRef.otp(1).label, b"k" * 32)
    keys.add_proof_key(1)
    proof = KeyProof(every=10)
    for _ in range(3):
        with pytest.raises(HsmUnavailable):
            await proof.check(keys)


async def test_new_current_keys_are_self_tested_at_once() -> None:
    """A rotation (a new current OTP key) runs the self-test on the next round, not after `every` rounds."""
    keys, proof = counting(), KeyProof(every=10)
    await proof.check(keys)
    keys.add_key(KeyRef.otp(2).label, b"n" * 32)
    await proof.check(keys)
    assert keys.macs == 4

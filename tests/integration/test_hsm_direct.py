"""MACs and signatures through the module's own C_SignInit and C_Sign with the GIL held (decision 0086),
on a real SoftHSM token: the same results as the library gives, the GIL kept for the whole call, nothing left
active when the module refuses, and python-pkcs11's path where a module exports no such functions."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pkcs11 import Mechanism

from sesame.hsm.direct import direct_signer
from sesame.hsm.keys import import_secret, init_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.hsm.self_test import verifies
from sesame.server.domain.model import KeyRef, MacAlgorithm

pytestmark = pytest.mark.integration

SECRET = secrets.token_bytes(32)


@pytest.fixture
def direct_store(make_token: Callable[[str], Pkcs11Config]) -> Iterator[tuple[Pkcs11KeyStore, KeyRef]]:
    """A store on its own token, with the ceremony's keys and one imported HMAC key."""
    config = make_token(f"direct-{secrets.token_hex(4)}")
    init_keys(config)
    key = import_secret(config, "direct-hmac", SECRET)
    store = Pkcs11KeyStore.open(config)
    yield store, key
    store.close()


async def test_macs_and_signatures_are_the_librarys(direct_store: tuple[Pkcs11KeyStore, KeyRef]) -> None:
    """SoftHSM exports C_SignInit and C_Sign: the direct path is taken, its MACs are HMAC-SHA1/SHA256 of the
    key, its signatures verify under the proof key's public half."""
    store, key = direct_store
    assert store._worker.direct is not None
    for data in (b"", b"x", secrets.token_bytes(5000)):
        assert await store.mac(key, data, MacAlgorithm.SHA256) == hmac.new(SECRET, data, "sha256").digest()
        assert await store.mac(key, data, MacAlgorithm.SHA1) == hmac.new(SECRET, data, "sha1").digest()
    proof_key = await store.current_proof_key()
    [public] = [k for k in await store.public_keys() if k.kid == proof_key.label]
    signature = await store.sign(proof_key, b"the signing input")
    assert verifies(public, b"the signing input", signature)
    assert not verifies(public, b"another input", signature)


async def test_a_long_mac_keeps_the_gil(direct_store: tuple[Pkcs11KeyStore, KeyRef]) -> None:
    """A Python thread spinning beside a MAC of 64 MiB gets (almost) nothing done while the module hashes:
    the GIL is held through the C call. Through python-pkcs11 (`with nogil`) it spins all along."""
    store, key = direct_store
    data = bytes(64 << 20)
    await store.mac(key, b"warm", MacAlgorithm.SHA256)  # the key's handle cached: the call runs inline
    spins = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            spins[0] += 1

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        before, started = spins[0], time.perf_counter()
        await asyncio.sleep(0.2)  # the spinner alone: its rate
        rate = (spins[0] - before) / (time.perf_counter() - started)
        before, started = spins[0], time.perf_counter()
        mac = await store.mac(key, data, MacAlgorithm.SHA256)
        took, spun = time.perf_counter() - started, spins[0] - before
    finally:
        stop.set()
        spinner.join()
    assert mac == hmac.new(SECRET, data, "sha256").digest()
    # The spinner may run between our Python steps (a switch interval, 5 ms, at most each time); during the
    # hash itself (~100 ms or more) it may not.
    assert took > 0.05
    assert spun < rate * took / 4, (spun, rate, took)


async def test_a_refusal_leaves_no_operation_active(direct_store: tuple[Pkcs11KeyStore, KeyRef]) -> None:
    """A key handle that names nothing, or a mechanism the key does not allow: None, and the next calls (the
    direct path's and the library's) work, so no signing operation was left open on the session."""
    store, key = direct_store
    await store.mac(key, b"warm", MacAlgorithm.SHA256)
    worker, token = store._worker, store._live()
    direct = worker.direct
    assert direct is not None

    def refusals() -> list[bytes | None]:
        session = token.session
        hmac_key = token.secret_key(key.label)
        return [
            direct.sign(session.handle, 0x7FFFFFF0, Mechanism.SHA256_HMAC, b"data"),
            direct.sign(session.handle, hmac_key.handle, Mechanism.ECDSA, hashlib.sha256(b"d").digest()),
        ]

    assert worker.run(refusals) == [None, None]
    assert (
        await store.mac(key, b"after", MacAlgorithm.SHA256) == hmac.new(SECRET, b"after", "sha256").digest()
    )
    worker._direct = None  # the library's own path, on the same session (the worker is the process's)
    try:
        again = await store.mac(key, b"again", MacAlgorithm.SHA256)
    finally:
        worker._direct = direct
    assert again == hmac.new(SECRET, b"again", "sha256").digest()


def test_a_module_without_the_functions_has_no_direct_path() -> None:
    """A library that exports no C_SignInit (libc), or none at all: no direct signer (python-pkcs11 signs)."""
    assert direct_signer("libc.so.6") is None
    assert direct_signer("/nonexistent/libpkcs11.so") is None

"""Hot HSM calls run on the caller's thread when the module is free, else they wait on the HSM thread.

docs/decisions/0020-hsm-calls-inline.md: a MAC on a ready session makes no thread hop; a MAC that would have
to wait for the module's lock (a search, a ceremony, another thread's call) never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
from collections.abc import Callable, Iterator

import pytest

from sesame.hsm.keys import import_secret
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.model import KeyKind, KeyRef, MacAlgorithm

pytestmark = pytest.mark.integration

SECRET = b"i" * 32
GUARD_SECONDS = 10  # a liveness guard against a hang, not a timing assertion


@pytest.fixture
def inline_store(make_token: Callable[[str], Pkcs11Config]) -> Iterator[tuple[Pkcs11KeyStore, KeyRef]]:
    """A store on its own token with one imported HMAC key."""
    config = make_token(f"inline-{secrets.token_hex(4)}")
    key = import_secret(config, "inline-key", SECRET)
    store = Pkcs11KeyStore.open(config)
    yield store, key
    store.close()


def expected(data: bytes) -> bytes:
    """The HMAC-SHA256 the token must give."""
    return hmac.new(SECRET, data, "sha256").digest()


async def test_a_warm_mac_needs_no_hsm_thread(inline_store: tuple[Pkcs11KeyStore, KeyRef]) -> None:
    """With the HSM thread kept busy (not holding the module), a MAC on a cached key still answers."""
    store, key = inline_store
    assert await store.mac(key, b"warm", MacAlgorithm.SHA256) == expected(b"warm")  # caches the handle
    release = threading.Event()
    busy = store._worker._executor.submit(release.wait)
    try:
        mac = await asyncio.wait_for(store.mac(key, b"inline", MacAlgorithm.SHA256), GUARD_SECONDS)
    finally:
        release.set()
        busy.result()
    assert mac == expected(b"inline")


async def test_a_mac_behind_a_held_module_lock_waits_off_the_loop(
    inline_store: tuple[Pkcs11KeyStore, KeyRef],
) -> None:
    """While another thread holds the module, a MAC waits on the HSM thread and the loop keeps running."""
    store, key = inline_store
    await store.mac(key, b"warm", MacAlgorithm.SHA256)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._worker.lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        pending = asyncio.create_task(store.mac(key, b"later", MacAlgorithm.SHA256))
        for _ in range(10):
            await asyncio.sleep(0)  # the loop runs: the MAC did not block it waiting for the lock
        assert not pending.done()
    finally:
        release.set()
        holder.join()
    assert await asyncio.wait_for(pending, GUARD_SECONDS) == expected(b"later")


async def test_a_search_always_waits_for_the_hsm_thread(inline_store: tuple[Pkcs11KeyStore, KeyRef]) -> None:
    """Listing key versions (a search) never runs on the loop: with the HSM thread busy, it waits for it."""
    store, _ = inline_store
    release = threading.Event()
    busy = store._worker._executor.submit(release.wait)
    try:
        pending = asyncio.create_task(store.versions(KeyKind.OTP))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not pending.done()
    finally:
        release.set()
        busy.result()
    assert await asyncio.wait_for(pending, GUARD_SECONDS) == []

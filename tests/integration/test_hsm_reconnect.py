"""The reconnect policy: a lost session is reopened once; a token that is gone gives HsmUnavailable."""

from __future__ import annotations

import hmac
import logging
import os
import subprocess
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pkcs11.exceptions import MechanismInvalid, SessionHandleInvalid

from sesame.hsm.keys import import_secret, init_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.hsm.session import _LostSearches
from sesame.hsm.worker import hsm_worker
from sesame.server.domain.errors import HsmUnavailable
from sesame.server.domain.model import KeyRef, MacAlgorithm

pytestmark = pytest.mark.integration

SECRET = b"r" * 32


def _close_session_under(store: Pkcs11KeyStore) -> object:
    """Log out and close the store's PKCS#11 session on the HSM thread, as a token reset would."""
    token = store._token
    assert token is not None
    session = store._worker.run(lambda: token.session)
    store._worker.run(session.close)
    return session


def _delete_token(label: str) -> None:
    """Remove a token from the session's SoftHSM directory, as pulling a card out would."""
    subprocess.run(
        ["softhsm2-util", "--delete-token", "--token", label], env=os.environ, check=True, capture_output=True
    )


# A search left open on the lost session is logged, not printed by Python (session._LostSearches).
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_mac_reconnects_after_the_session_was_closed(make_token: Callable[[str], Pkcs11Config]) -> None:
    """After the session is closed from under the store, mac() opens a new one and still answers right."""
    config = make_token("reconnect")
    key = import_secret(config, "reconnect-key", SECRET)
    store = Pkcs11KeyStore.open(config)
    try:
        lost = _close_session_under(store)
        mac = await store.mac(key, b"after", MacAlgorithm.SHA256)
        assert mac == hmac.new(SECRET, b"after", "sha256").digest()
        assert store._worker.run(lambda: store._live().session) is not lost
    finally:
        store.close()


async def test_random_reconnects_after_the_session_was_closed(
    make_token: Callable[[str], Pkcs11Config],
) -> None:
    """random() also goes through the reconnect policy."""
    store = Pkcs11KeyStore.open(make_token("reconnect-random"))
    try:
        _close_session_under(store)
        assert len(await store.random(16)) == 16
    finally:
        store.close()


# A search left open on the lost session is logged, not printed by Python (session._LostSearches).
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_a_deleted_token_gives_hsm_unavailable(
    make_token: Callable[[str], Pkcs11Config], keystore: Pkcs11KeyStore, rfc_keys: dict[str, KeyRef]
) -> None:
    """When the token is gone the retry fails and HsmUnavailable is raised; other tokens keep working."""
    config = make_token("doomed")
    key = import_secret(config, "doomed-key", SECRET)
    store = Pkcs11KeyStore.open(config)
    try:
        _delete_token("doomed")
        _close_session_under(store)
        with pytest.raises(HsmUnavailable):
            await store.mac(key, b"data", MacAlgorithm.SHA256)
    finally:
        store.close()
    assert len(await keystore.mac(rfc_keys["key32"], b"still here", MacAlgorithm.SHA256)) == 32


async def test_check_fails_with_hsm_unavailable_when_the_token_is_gone(
    make_token: Callable[[str], Pkcs11Config],
) -> None:
    """The key store's health probe passes on a live token and raises HsmUnavailable once it is deleted."""
    config = make_token("probed")
    init_keys(config)  # the probe tests the current keys too
    store = Pkcs11KeyStore.open(config)
    try:
        await store.check()
        _delete_token("probed")
        _close_session_under(store)
        with pytest.raises(HsmUnavailable):
            await store.check()
    finally:
        store.close()


async def test_a_closed_store_refuses_calls(make_token: Callable[[str], Pkcs11Config]) -> None:
    """After close(), calls raise HsmUnavailable instead of reaching the token."""
    store = Pkcs11KeyStore.open(make_token("closed"))
    store.close()
    store.close()
    with pytest.raises(HsmUnavailable):
        await store.random(8)


def test_a_wrong_pin_is_hsm_unavailable_without_the_pin(
    make_token: Callable[[str], Pkcs11Config], caplog: pytest.LogCaptureFixture
) -> None:
    """Opening with a wrong PIN raises HsmUnavailable whose message names the settings to check and holds
    no PIN, nor do the logs."""
    config = make_token("wrong-pin")
    wrong = Pkcs11Config(module=config.module, token_label=config.token_label, pin="Wr0ngPinValue")
    with caplog.at_level(logging.DEBUG), pytest.raises(HsmUnavailable) as raised:
        Pkcs11KeyStore.open(wrong)
    assert "Wr0ngPinValue" not in str(raised.value)
    assert (
        "PinIncorrect: the token refused the user PIN given (SESAME_HSM_PIN or SESAME_HSM_PIN_FILE)"
        in str(raised.value)
    )
    assert "Wr0ngPinValue" not in repr(raised.value)
    assert "Wr0ngPinValue" not in caplog.text


def test_an_unknown_token_is_hsm_unavailable(hsm_config: Pkcs11Config) -> None:
    """A token label that no slot holds raises HsmUnavailable naming the two settings to check (the boot
    printed `sesame: HSM call failed: NoSuchToken` alone)."""
    missing = Pkcs11Config(module=hsm_config.module, token_label="no-such-token", pin="1234")  # noqa: S106
    with pytest.raises(HsmUnavailable) as raised:
        Pkcs11KeyStore.open(missing)
    assert str(raised.value) == (
        "HSM call failed: NoSuchToken: the PKCS#11 module (SESAME_PKCS11_MODULE) has no token labelled as "
        "SESAME_HSM_TOKEN says"
    )
    assert "1234" not in str(raised.value)


async def test_a_reinitialised_library_never_lends_another_token_session(
    make_token: Callable[[str], Pkcs11Config],
) -> None:
    """After C_Finalize/C_Initialize, a store reopens its own session instead of using a reused handle.

    SoftHSM numbers sessions from 1 again after a re-initialisation: a store that kept its old handle
    would run its calls in another token's session and answer KeyNotFound for a key it holds.
    """
    config, other_config = make_token("aliased"), make_token("aliasing")
    key = import_secret(config, "aliased-key", SECRET)
    worker = hsm_worker(config.module)
    worker.run(worker.reinitialize)  # handles restart from 1: the store's session gets a low one
    store = Pkcs11KeyStore.open(config)
    try:
        worker.run(worker.reinitialize)  # and from 1 again: the next session opened reuses it
        other = Pkcs11KeyStore.open(other_config)
        try:
            mac = await store.mac(key, b"mine", MacAlgorithm.SHA256)
        finally:
            other.close()
        assert mac == hmac.new(SECRET, b"mine", "sha256").digest()
    finally:
        store.close()


def test_only_the_lost_sessions_search_finalisers_are_quieted() -> None:
    """The hook keeps python-pkcs11's finaliser error of a lost session (logged at DEBUG) and hands every
    other unraisable, a PKCS#11 error that is no session loss included, to the hook before it."""
    passed: list[Any] = []
    hook = _LostSearches(passed.append)
    finaliser = "pkcs11._pkcs11.OperationContext.__del__"

    def seen(error: BaseException, where: object) -> SimpleNamespace:
        return SimpleNamespace(exc_type=type(error), exc_value=error, exc_traceback=None, object=where)

    lost = seen(SessionHandleInvalid(), finaliser)
    hook(lost)
    others = [
        seen(ValueError("x"), finaliser),
        seen(SessionHandleInvalid(), "a.Thing.__del__"),
        seen(MechanismInvalid(), finaliser),
    ]
    for other in others:
        hook(other)
    assert passed == others


async def test_a_key_cached_before_a_reinitialisation_is_found_again_in_the_new_session(
    make_token: Callable[[str], Pkcs11Config],
) -> None:
    """A key handle cached before C_Finalize/C_Initialize is never used after it (a CI run).

    SoftHSM numbers objects from 1 again after a re-initialisation, in the order they are found: a store
    that took its cached handle before reopening its session signed with whatever object holds that number
    now (another token's key, found first), or failed with SessionHandleInvalid through the key's old session.
    """
    config, other_config = make_token("cached"), make_token("first-found")
    key = import_secret(config, "cached-key", SECRET)
    other_secret = b"o" * 32
    other_key = import_secret(other_config, "first-found-key", other_secret)
    store, other = Pkcs11KeyStore.open(config), Pkcs11KeyStore.open(other_config)
    try:
        for _ in range(3):
            assert (
                await store.mac(key, b"before", MacAlgorithm.SHA256)
                == hmac.new(SECRET, b"before", "sha256").digest()
            )
            worker = store._worker
            worker.run(worker.reinitialize)
            # The other token's key is found first in the new generation: it takes the low handles.
            expected_other = hmac.new(other_secret, b"other", "sha256").digest()
            assert await other.mac(other_key, b"other", MacAlgorithm.SHA256) == expected_other
            mac = await store.mac(key, b"after", MacAlgorithm.SHA256)
            assert mac == hmac.new(SECRET, b"after", "sha256").digest()
    finally:
        other.close()
        store.close()

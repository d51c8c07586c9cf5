"""Pytest plugin: one SoftHSM token directory per test session, the token, its keys and a key store.

SoftHSM reads SOFTHSM2_CONF once per process, so every HSM test of the session shares this directory;
tests that need their own token create one beside the main one (`make_token`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sesame.hsm.keys import import_secret, init_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.hsm.softhsm import bootstrap_token
from sesame.server.domain.model import KeyRef

VECTORS = Path(__file__).parent.parent / "vectors"


@pytest.fixture(scope="session")
def hsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's SoftHSM token directory."""
    return tmp_path_factory.mktemp("softhsm")


@pytest.fixture(scope="session")
def make_token(hsm_dir: Path) -> Callable[[str], Pkcs11Config]:
    """Create another token (with a fresh random PIN) in the session's token directory."""

    def make(label: str) -> Pkcs11Config:
        return bootstrap_token(hsm_dir, label=label, pin=secrets.token_hex(8))

    return make


@pytest.fixture(scope="session")
def hsm_config(make_token: Callable[[str], Pkcs11Config]) -> Pkcs11Config:
    """The session's main token `sesame`, with its first OTP key."""
    config = make_token("sesame")
    init_keys(config)
    return config


@pytest.fixture(scope="session")
def keystore(hsm_config: Pkcs11Config) -> Iterator[Pkcs11KeyStore]:
    """A key store opened on the main token for the whole session."""
    store = Pkcs11KeyStore.open(hsm_config)
    yield store
    store.close()


@pytest.fixture(scope="session")
def rfc_keys(hsm_config: Pkcs11Config) -> dict[str, KeyRef]:
    """The RFC 6287 keys key20, key32, key64 imported in the main token (labels `rfc6287-<name>`)."""
    keys = json.loads((VECTORS / "rfc6287.json").read_text())["keys"]
    return {
        name: import_secret(hsm_config, f"rfc6287-{name}", bytes.fromhex(hex_key))
        for name, hex_key in keys.items()
    }

"""RFC 4226 Appendix D: the HMAC-SHA-1 and HOTP values, computed by SoftHSM with the RFC's key imported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sesame.hsm.keys import import_secret
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain import ocra
from sesame.server.domain.model import KeyRef, MacAlgorithm

pytestmark = pytest.mark.integration

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "rfc4226.json").read_text())


@pytest.fixture(scope="module")
def rfc4226_key(hsm_config: Pkcs11Config) -> KeyRef:
    """The RFC 4226 secret, imported in the session's token."""
    return import_secret(hsm_config, "rfc4226-secret", VECTORS["secret_ascii"].encode())


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: f"count{case['counter']}")
async def test_rfc4226_hmac_sha1(keystore: Pkcs11KeyStore, rfc4226_key: KeyRef, case: dict[str, Any]) -> None:
    """HMAC-SHA-1 of the 8-byte counter is the value listed in Appendix D."""
    mac = await keystore.mac(rfc4226_key, case["counter"].to_bytes(8, "big"), MacAlgorithm.SHA1)
    assert mac.hex() == case["hmac_sha1"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: f"count{case['counter']}")
async def test_rfc4226_hotp(keystore: Pkcs11KeyStore, rfc4226_key: KeyRef, case: dict[str, Any]) -> None:
    """The HSM's HMAC, dynamically truncated by our code, gives the 6-digit HOTP value of Appendix D."""
    mac = await keystore.mac(rfc4226_key, case["counter"].to_bytes(8, "big"), MacAlgorithm.SHA1)
    assert ocra.truncate(mac, 6) == case["hotp"]


async def test_rfc_keys_are_in_the_token(keystore: Pkcs11KeyStore, rfc_keys: dict[str, KeyRef]) -> None:
    """key20, key32 and key64 of RFC 6287 are usable with SHA-1, SHA-256 and SHA-512 respectively."""
    pairs = {"key20": MacAlgorithm.SHA1, "key32": MacAlgorithm.SHA256, "key64": MacAlgorithm.SHA512}
    lengths = {name: len(await keystore.mac(rfc_keys[name], b"q", alg)) for name, alg in pairs.items()}
    assert lengths == {"key20": 20, "key32": 32, "key64": 64}


def test_import_refuses_a_taken_label(hsm_config: Pkcs11Config) -> None:
    """Importing under a label that exists raises ValueError instead of creating a duplicate."""
    import_secret(hsm_config, "rfc4226-duplicate", b"x" * 32)
    with pytest.raises(ValueError):
        import_secret(hsm_config, "rfc4226-duplicate", b"y" * 32)

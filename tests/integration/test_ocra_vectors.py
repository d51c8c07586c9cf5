"""RFC 6287 Appendix C, computed through the key store: the HMAC runs in SoftHSM with the RFC's keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sesame.server.domain import ocra
from sesame.server.domain.model import KeyRef
from sesame.server.domain.ports import KeyStore
from tests.fakes.keystore import FakeKeyStore

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "rfc6287.json").read_text())
CASES = [
    pytest.param(
        case["suite"],
        case["key"],
        item,
        id=f"{case['suite']}[{item['q']}{'/c' + str(item.get('c')) if 'c' in item else ''}]",
    )
    for case in VECTORS["cases"]
    for item in case["inputs"]
]


@pytest.fixture(params=["fake", pytest.param("softhsm", marks=pytest.mark.integration)])
def vector_keys(request: pytest.FixtureRequest) -> tuple[KeyStore, dict[str, KeyRef]]:
    """The RFC keys in a fake key store (stdlib hmac) and in the SoftHSM token."""
    if request.param == "softhsm":
        return request.getfixturevalue("keystore"), request.getfixturevalue("rfc_keys")
    fake = FakeKeyStore()
    refs = {}
    for name, hex_key in VECTORS["keys"].items():
        refs[name] = KeyRef(f"rfc6287-{name}")
        fake.add_key(refs[name].label, bytes.fromhex(hex_key))
    return fake, refs


@pytest.mark.parametrize(("suite_text", "key_name", "item"), CASES)
async def test_rfc6287_vector(
    vector_keys: tuple[KeyStore, dict[str, KeyRef]], suite_text: str, key_name: str, item: dict[str, Any]
) -> None:
    """Each Appendix C response is reproduced exactly."""
    keys, refs = vector_keys
    suite = ocra.OcraSuite.parse(suite_text)
    data = suite.data_input(
        item["q"],
        counter=item.get("c"),
        pin_hash=bytes.fromhex(VECTORS["pin_sha1"]) if suite.pin_algorithm else None,
        timestamp=int(VECTORS["timestamp"], 16) if item.get("t") else None,
    )
    assert await ocra.compute(keys, refs[key_name], suite, data) == item["expected"]

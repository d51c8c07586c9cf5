"""Key pairs a session without the PIN generates on the token are not Sésame's (an outside audit, AH1).

SoftHSM lets a session that never logged in generate key pairs, public objects only, the private half
readable and exportable. One made under the current proof label made it ambiguous (no proof key published,
health NOT_SERVING); then, with no proof key current, one made under the next label was taken up unchecked:
Sésame signed with it, published it, and its value, read back without the PIN, forged proofs that
`sesame proof verify` accepted. Such objects are now ignored, and a key that becomes current where none was
is checked as a rotation's is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from pkcs11 import Attribute, KeyType, MechanismFlag

from sesame.hsm.keys import init_keys, rotate_keys
from sesame.hsm.pkcs11 import P256_PARAMS, Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.errors import KeyExposed, KeyNotFound
from sesame.server.domain.model import KeyKind
from tests.support.planted_keys import PINLESS_PAIR, PINLESS_RSA_PAIR, plant

pytestmark = pytest.mark.integration


def _pinless_pair(config: Pkcs11Config, label: str, script: str = PINLESS_PAIR) -> None:
    subprocess.run(
        [sys.executable, "-c", script, config.module, config.token_label, label],
        env=os.environ,
        check=True,
        capture_output=True,
        timeout=60,
    )


async def test_a_pinless_pair_under_the_current_label_changes_nothing(
    make_token: Callable[[str], Pkcs11Config],
) -> None:
    config = make_token("pinless-current")
    init_keys(config)
    store = Pkcs11KeyStore.open(config)
    try:
        published = await store.public_keys()
        _pinless_pair(config, "sesame-proof-v1")
        assert await store.public_keys() == published
        await store.check()  # the current proof key is whole: SERVING
    finally:
        store.close()


async def test_a_pinless_rsa_pair_under_a_proof_label_changes_nothing(
    make_token: Callable[[str], Pkcs11Config],
) -> None:
    """Its public half has no CKA_EC_POINT: reading it failed GetProofKeys and every health round."""
    config = make_token("pinless-rsa")
    init_keys(config)
    store = Pkcs11KeyStore.open(config)
    try:
        published = await store.public_keys()
        _pinless_pair(config, "sesame-proof-v1", PINLESS_RSA_PAIR)
        _pinless_pair(config, "sesame-proof-v2", PINLESS_RSA_PAIR)
        assert await store.public_keys() == published
        await store.refresh_keys()
        assert (await store.current_proof_key()).label == "sesame-proof-v1"
        await store.check()
    finally:
        store.close()


async def test_a_pinless_pair_is_never_taken_up_where_no_proof_key_was(
    make_token: Callable[[str], Pkcs11Config], caplog: pytest.LogCaptureFixture
) -> None:
    config = make_token("pinless-next")
    rotate_keys(config, KeyKind.OTP)  # no proof key yet
    store = Pkcs11KeyStore.open(config)
    try:
        await store.refresh_keys()
        _pinless_pair(config, "sesame-proof-v1")
        await store.refresh_keys()
        with pytest.raises(KeyNotFound):
            await store.current_proof_key()
        assert await store.public_keys() == []
        said = [
            r for r in caplog.records if r.getMessage().startswith("sesame-proof-v1: a key object anyone")
        ]
        assert [r.levelno for r in said] == [logging.ERROR]
    finally:
        store.close()


async def test_an_exposed_key_that_becomes_current_where_none_was_is_refused(
    make_token: Callable[[str], Pkcs11Config],
) -> None:
    """A PIN holder's readable pair, the first proof key: checked as a rotation's new key is (it was not)."""
    config = make_token("exposed-first")
    rotate_keys(config, KeyKind.OTP)
    store = Pkcs11KeyStore.open(config)
    try:
        await store.refresh_keys()

        def make(session: Any) -> None:
            curve = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True
            )
            curve.generate_keypair(
                store=True,
                label="sesame-proof-v1",
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                public_template={Attribute.PRIVATE: True},
                private_template={
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: False,
                    Attribute.EXTRACTABLE: True,
                },
            )

        plant(config, make)
        with pytest.raises(KeyExposed):
            await store.refresh_keys()
        with pytest.raises(KeyExposed):
            await store.current_proof_key()  # every call needing it reads the token again and is refused
    finally:
        store.close()

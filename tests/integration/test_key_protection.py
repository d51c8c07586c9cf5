"""The keys' protection read at boot and at a rotation, on real SoftHSM tokens (decision 0079).

The unprotected and old-style keys are made here straight through python-pkcs11, under Sésame's labels, as
a careless ceremony or an earlier build would have left them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from pkcs11 import Attribute, KeyType, ObjectClass

from sesame.clients.redis_key_ledger import RedisKeyLedger
from sesame.hsm.keys import init_keys, rotate_keys
from sesame.hsm.pkcs11 import P256_PARAMS, Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.call_meter import UNMETERED
from sesame.server.domain.errors import KeyExposed
from sesame.server.domain.model import KeyRef, MacAlgorithm
from sesame.server.key_boot import KeyAudit, KeyBootPolicy, ready_keys
from tests.support.planted_keys import EXPOSED, OLD_STYLE, otp_key, plant

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
PLAIN = KeyBootPolicy()

SECRET = bytes.fromhex("5e5a4d4e" * 8)  # an imported key's value: it must appear in no error and no log


@pytest.fixture
def token(make_token: Callable[[str], Pkcs11Config]) -> Pkcs11Config:
    """An empty token of the test's own."""
    return make_token(f"protect-{secrets.token_hex(4)}")


@pytest.fixture
def ledger(redis_client: aioredis.Redis) -> RedisKeyLedger:
    """The key ledger on the clean test database."""
    return RedisKeyLedger(redis_client)


@pytest.fixture
async def store(token: Pkcs11Config) -> AsyncIterator[Pkcs11KeyStore]:
    """A key store on the test's token, closed after the test."""
    opened = await asyncio.to_thread(Pkcs11KeyStore.open, token)
    yield opened
    await asyncio.to_thread(opened.close)


def imported_otp_key(config: Pkcs11Config, version: int) -> str:
    """Put SECRET in the token as a sensitive, non-extractable `sesame-otp-v<version>`: once known outside."""
    label = KeyRef.otp(version).label
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.LABEL: label,
        Attribute.VALUE: SECRET,
        **OLD_STYLE,
    }
    plant(config, lambda session: session.create_object(template))
    return label


def extractable_proof_key(config: Pkcs11Config, version: int) -> str:
    """Generate an EC P-256 pair `sesame-proof-v<version>` whose private half is extractable."""
    label = KeyRef.proof(version).label

    def make(session: Any) -> None:
        parameters = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True
        )
        parameters.generate_keypair(
            store=True,
            label=label,
            public_template={Attribute.VERIFY: True},
            private_template={Attribute.SIGN: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True},
        )

    plant(config, make)
    return label


def key_value(config: Pkcs11Config, label: str) -> bytes:
    """CKA_VALUE of a secret key the token lets anyone read (a non-sensitive key)."""
    found: list[bytes] = []
    plant(
        config,
        lambda session: found.append(
            bytes(session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)[Attribute.VALUE])
        ),
    )
    return found[0]


def warnings_naming(caplog: pytest.LogCaptureFixture, label: str) -> list[str]:
    """The WARNING lines of `sesame.keys` that name `label` and say it can be copied."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "sesame.keys"
        and record.levelno == logging.WARNING
        and label in record.getMessage()
        and "copied" in record.getMessage()
    ]


async def test_keys_made_by_sesame_pass_the_audit_with_nothing_to_report(
    token: Pkcs11Config, store: Pkcs11KeyStore, ledger: RedisKeyLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """A token whose keys the ceremony made boots with nothing copyable and no warning."""
    init_keys(token)
    rotate_keys(token)
    caplog.set_level(logging.WARNING, logger="sesame.keys")
    assert await ready_keys(token, store, ledger, PLAIN, NOW) == KeyAudit(copyable=())
    assert not [record for record in caplog.records if "copied" in record.getMessage()]


async def test_an_old_style_copyable_key_is_served_and_reported_once(
    token: Pkcs11Config, ledger: RedisKeyLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """A key an earlier build made (CKA_COPYABLE true) is served; the boot names it once, to be rotated.
    (A store opened before the key was made names it at its pickup too: a key taken up while serving.)"""
    label = otp_key(token, 1, OLD_STYLE)
    init_keys(token)  # the proof and journal keys, made now: not copyable
    caplog.set_level(logging.WARNING, logger="sesame.keys")
    store = await asyncio.to_thread(Pkcs11KeyStore.open, token)  # a boot's: on the token as it is
    try:
        audit = await ready_keys(token, store, ledger, PLAIN, NOW)
        assert audit == KeyAudit(copyable=(label,))
        assert len(warnings_naming(caplog, label)) == 1
        assert (await store.current_otp_key()).label == label  # served
        assert len(await store.mac(KeyRef(label), b"input", MacAlgorithm.SHA256)) == 32
    finally:
        await asyncio.to_thread(store.close)


@pytest.mark.parametrize("way", list(EXPOSED))
async def test_an_unprotected_otp_key_refuses_the_boot_by_its_label(
    token: Pkcs11Config,
    store: Pkcs11KeyStore,
    ledger: RedisKeyLedger,
    caplog: pytest.LogCaptureFixture,
    way: str,
) -> None:
    """A non-sensitive or extractable OTP key stops the boot with KeyExposed: its label, never its value."""
    template, reason = EXPOSED[way]
    label = otp_key(token, 1, template)
    init_keys(token)
    value = key_value(token, label) if way == "not-sensitive" else None
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KeyExposed) as caught:
        await ready_keys(token, store, ledger, PLAIN, NOW)
    assert (caught.value.label, reason in caught.value.reasons) == (label, True)
    assert label in str(caught.value)
    if value is not None:  # the token gives this key's value to anyone: it must not reach our words
        for shown in (str(caught.value), caplog.text):
            assert value.hex() not in shown
            assert value.hex().upper() not in shown
    assert (await ledger.seen()).prints == {}  # refused before anything was recorded


async def test_an_imported_key_is_refused_as_once_known_outside_the_token(
    token: Pkcs11Config, store: Pkcs11KeyStore, ledger: RedisKeyLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """A key loaded with its value (sensitive now, but not always, and once extractable) is refused."""
    label = imported_otp_key(token, 1)
    init_keys(token)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KeyExposed) as caught:
        await ready_keys(token, store, ledger, PLAIN, NOW)
    assert caught.value.label == label
    assert caught.value.reasons == ("not always sensitive", "once extractable")
    for shown in (str(caught.value), caplog.text):
        assert SECRET.hex() not in shown
        assert SECRET.hex().upper() not in shown


async def test_an_extractable_proof_key_refuses_the_boot(
    token: Pkcs11Config, store: Pkcs11KeyStore, ledger: RedisKeyLedger
) -> None:
    """A proof key whose private half is extractable stops the boot with KeyExposed naming it."""
    label = extractable_proof_key(token, 1)
    init_keys(token)
    with pytest.raises(KeyExposed) as caught:
        await ready_keys(token, store, ledger, PLAIN, NOW)
    assert caught.value.label == label
    assert "extractable" in caught.value.reasons


async def test_an_old_unprotected_version_refuses_the_boot_too(
    token: Pkcs11Config, store: Pkcs11KeyStore, ledger: RedisKeyLedger
) -> None:
    """Every version is read, not only the current one: an older OTP key still verifies open challenges."""
    label = otp_key(token, 1, EXPOSED["extractable"][0])
    init_keys(token)
    rotate_keys(token)
    await store.refresh_keys()
    assert (await store.current_otp_key()).label == "sesame-otp-v2"
    with pytest.raises(KeyExposed) as caught:
        await ready_keys(token, store, ledger, PLAIN, NOW)
    assert caught.value.label == label


async def test_an_unprotected_key_rotated_in_while_serving_is_refused(
    token: Pkcs11Config, store: Pkcs11KeyStore, ledger: RedisKeyLedger
) -> None:
    """A newest OTP key that is extractable, made after the boot, is refused when picked up, and stays so."""
    init_keys(token)
    await ready_keys(token, store, ledger, PLAIN, NOW)
    label = otp_key(token, 2, EXPOSED["extractable"][0])
    for _ in range(2):  # the refusal holds: the previous key is not silently kept either
        with pytest.raises(KeyExposed) as caught:
            await store.refresh_keys()
        assert caught.value.label == label
    with pytest.raises(KeyExposed):  # the calls that need the current key fail closed, on every view
        await store.metered(UNMETERED).current_otp_key()


async def test_a_copyable_key_rotated_in_while_serving_is_used_and_warned_of_once(
    token: Pkcs11Config, store: Pkcs11KeyStore, ledger: RedisKeyLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """A newest OTP key an earlier build's `sesame keys rotate` made is used, with one WARNING naming it."""
    init_keys(token)
    await ready_keys(token, store, ledger, PLAIN, NOW)
    caplog.set_level(logging.WARNING, logger="sesame.keys")
    label = otp_key(token, 2, OLD_STYLE)
    await store.refresh_keys()
    await store.refresh_keys()
    assert (await store.current_otp_key()).label == label
    assert len(warnings_naming(caplog, label)) == 1

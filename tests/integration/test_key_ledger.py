"""The key ledger in real Redis, and the boot's key checks against real SoftHSM tokens."""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_key_ledger import RedisKeyLedger
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_server import EmbeddedRedis
from sesame.hsm.keys import init_keys, list_keys, rotate_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError, KeyReplaced
from sesame.server.domain.key_ledger import KeyPrint
from sesame.server.domain.model import KeyKind
from sesame.server.key_boot import KeyBootPolicy, fingerprints, ready_keys, record_rotation
from sesame.server.keys import run_keys

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)  # the present: nothing fixed reaches Redis (decision 0058)
DEV = KeyBootPolicy(create_missing=True)
AFRESH = KeyBootPolicy(start_afresh=True)


@pytest.fixture
def ledger(redis_client: aioredis.Redis) -> RedisKeyLedger:
    """The key ledger on the clean test database."""
    return RedisKeyLedger(redis_client)


@pytest.fixture
def new_token(make_token: Callable[[str], Pkcs11Config]) -> Callable[[], Pkcs11Config]:
    """Make an empty token of the test's own (a replacement token, as after a loss)."""
    return lambda: make_token(f"ledger-{secrets.token_hex(4)}")


@pytest.fixture
async def opened() -> AsyncIterator[Callable[[Pkcs11Config], Pkcs11KeyStore]]:
    """Open key stores on tokens; every one is closed after the test."""
    stores: list[Pkcs11KeyStore] = []

    def open_store(config: Pkcs11Config) -> Pkcs11KeyStore:
        stores.append(Pkcs11KeyStore.open(config))
        return stores[-1]

    yield open_store
    for store in stores:
        await asyncio.to_thread(store.close)


def labels(config: Pkcs11Config) -> list[str]:
    """The labels of the keys on a token."""
    return [info.label for info in list_keys(config)]


async def test_the_ledger_remembers_the_highest_version_and_each_fingerprint(ledger: RedisKeyLedger) -> None:
    """record() raises the highest version of a kind, never lowers it, and keeps each label's fingerprint."""
    await ledger.record([KeyPrint(KeyKind.OTP, 3, "aa"), KeyPrint(KeyKind.PROOF, 1, "bb")], NOW)
    await ledger.record([KeyPrint(KeyKind.OTP, 1, "cc")], NOW)
    seen = await ledger.seen()
    assert (seen.top(KeyKind.OTP), seen.top(KeyKind.PROOF)) == (3, 1)
    assert seen.prints == {"sesame-otp-v3": "aa", "sesame-proof-v1": "bb", "sesame-otp-v1": "cc"}


async def test_a_label_seen_with_another_fingerprint_is_refused_and_nothing_written(
    ledger: RedisKeyLedger, redis_client: aioredis.Redis
) -> None:
    """Recording another key under a label seen raises KeyReplaced and writes nothing, not even new labels."""
    await ledger.record([KeyPrint(KeyKind.OTP, 1, "aa")], NOW)
    before = await ledger.seen()
    journal = await redis_client.xlen(Keyspace().key_ledger_journal())
    with pytest.raises(KeyReplaced) as caught:
        await ledger.record([KeyPrint(KeyKind.OTP, 2, "dd"), KeyPrint(KeyKind.OTP, 1, "ee")], NOW)
    assert caught.value.label == "sesame-otp-v1"
    assert await ledger.seen() == before
    assert await redis_client.xlen(Keyspace().key_ledger_journal()) == journal


async def test_a_first_dev_boot_makes_v1_and_records_it(
    ledger: RedisKeyLedger,
    new_token: Callable[[], Pkcs11Config],
    opened: Callable[[Pkcs11Config], Pkcs11KeyStore],
) -> None:
    """On an empty ledger and an empty development token, the boot makes v1 of each kind and records them."""
    config = new_token()
    keys = opened(config)
    await ready_keys(config, keys, ledger, DEV, NOW)
    assert labels(config) == ["sesame-otp-v1", "sesame-proof-v1", "sesame-journal-v1"]
    seen = await ledger.seen()
    assert (seen.top(KeyKind.OTP), seen.top(KeyKind.PROOF), seen.top(KeyKind.JOURNAL)) == (1, 1, 1)
    assert sorted(seen.prints.items()) == sorted(
        (key.label, key.fingerprint) for key in await fingerprints(keys)
    )


async def test_a_token_regenerated_under_used_labels_is_refused_even_afresh(
    ledger: RedisKeyLedger,
    new_token: Callable[[], Pkcs11Config],
    opened: Callable[[Pkcs11Config], Pkcs11KeyStore],
) -> None:
    """A new token where `sesame keys init` made v1 again holds other keys under used labels: refused."""
    original = new_token()
    await ready_keys(original, opened(original), ledger, DEV, NOW)
    replacement = new_token()
    init_keys(replacement)
    for policy in (DEV, AFRESH, KeyBootPolicy()):
        with pytest.raises(ConfigurationError, match="not the key Redis saw under that label"):
            await ready_keys(replacement, opened(replacement), ledger, policy, NOW)
    assert labels(replacement) == ["sesame-otp-v1", "sesame-proof-v1", "sesame-journal-v1"]


async def test_an_empty_token_starts_afresh_above_every_version_seen(
    ledger: RedisKeyLedger,
    new_token: Callable[[], Pkcs11Config],
    opened: Callable[[Pkcs11Config], Pkcs11KeyStore],
) -> None:
    """After v1..v3 were seen, an empty operator token is refused, and with start-afresh gets v4 and v2."""
    await ledger.record(
        [KeyPrint(KeyKind.OTP, 3, "aa"), KeyPrint(KeyKind.OTP, 1, "cc"), KeyPrint(KeyKind.PROOF, 1, "bb")],
        NOW,
    )
    replacement = new_token()
    keys = opened(replacement)
    with pytest.raises(ConfigurationError, match="lacks keys Redis holds data under"):
        await ready_keys(replacement, keys, ledger, KeyBootPolicy(), NOW)
    assert labels(replacement) == []
    await ready_keys(replacement, keys, ledger, AFRESH, NOW)
    assert labels(replacement) == ["sesame-otp-v4", "sesame-proof-v2"]
    assert (await keys.current_otp_key()).label == "sesame-otp-v4"
    seen = await ledger.seen()
    assert (seen.top(KeyKind.OTP), seen.top(KeyKind.PROOF)) == (4, 2)
    await ready_keys(replacement, keys, ledger, KeyBootPolicy(), NOW)  # remembered: a plain boot passes


def operator_settings(config: Pkcs11Config, redis_url: str) -> Settings:
    """Settings naming an operator's token and an external Redis, as `sesame keys` reads them."""
    return Settings.from_env(
        {
            "SESAME_PKCS11_MODULE": config.module,
            "SESAME_HSM_TOKEN": config.token_label,
            "SESAME_HSM_PIN": config.pin,
            "SESAME_REDIS_URL": redis_url,
        }
    )


async def test_a_key_ceremony_records_its_keys_and_tells_a_replaced_token_at_once(
    ledger: RedisKeyLedger, new_token: Callable[[], Pkcs11Config], redis_server: EmbeddedRedis
) -> None:
    """`sesame keys init|rotate` with a Redis URL record the token's keys; init on a new token is refused,
    before it makes a key (an outside audit: the three v1 keys were made, then refused)."""
    original = operator_settings(new_token(), redis_server.url)
    await asyncio.to_thread(run_keys, original, "init")
    await asyncio.to_thread(run_keys, original, "rotate")
    seen = await ledger.seen()
    assert (seen.top(KeyKind.OTP), seen.top(KeyKind.PROOF)) == (2, 1)
    token = new_token()
    replacement = operator_settings(token, redis_server.url)
    with pytest.raises(ConfigurationError, match="lacks keys Redis holds data under"):
        await asyncio.to_thread(run_keys, replacement, "init")
    assert await ledger.seen() == seen
    assert await asyncio.to_thread(list_keys, token) == []


async def test_a_newer_key_found_while_serving_is_recorded_before_it_is_used(
    new_token: Callable[[], Pkcs11Config], ledger: RedisKeyLedger
) -> None:
    """A rotation the ledger was not told of (a `keys rotate` killed before its record) is recorded by the
    process that finds it, before its first use (decision 0115)."""
    config = new_token()
    keys = await asyncio.to_thread(Pkcs11KeyStore.open, config)
    try:
        await ready_keys(config, keys, ledger, DEV, NOW)
        keys.before_rotated_keys_are_used(functools.partial(record_rotation, config, keys, ledger))
        await asyncio.to_thread(rotate_keys, config, KeyKind.OTP)
        assert (await ledger.seen()).top(KeyKind.OTP) == 1

        await keys.refresh_keys()  # what the re-read every 60 s does; here at once

        assert (await keys.current_otp_key()).label == "sesame-otp-v2"
        assert (await ledger.seen()).top(KeyKind.OTP) == 2
    finally:
        await asyncio.to_thread(keys.close)


async def test_a_newer_key_the_ledger_saw_as_another_is_not_used(
    new_token: Callable[[], Pkcs11Config], ledger: RedisKeyLedger
) -> None:
    """A newer key under a label the ledger saw with another key (the token replaced while serving) is not
    taken: the previous current key is not used either, every call that needs one is refused."""
    config = new_token()
    keys = await asyncio.to_thread(Pkcs11KeyStore.open, config)
    try:
        await ready_keys(config, keys, ledger, DEV, NOW)
        keys.before_rotated_keys_are_used(functools.partial(record_rotation, config, keys, ledger))
        await ledger.record([KeyPrint(KeyKind.OTP, 2, "00" * 8)], NOW)  # v2, as another token made it
        await asyncio.to_thread(rotate_keys, config, KeyKind.OTP)

        with pytest.raises(ConfigurationError, match="holds sesame-otp-v2, but not the key Redis saw"):
            await keys.refresh_keys()
        with pytest.raises(ConfigurationError, match="holds sesame-otp-v2, but not the key Redis saw"):
            await keys.current_otp_key()
    finally:
        await asyncio.to_thread(keys.close)

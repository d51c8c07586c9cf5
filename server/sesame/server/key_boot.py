"""The keys at boot: `sesame serve` starts only with working keys, and never reuses a key version.

A token that answers but holds no OTP key (or a damaged one) would serve: every StartChallenge would then
fail INTERNAL and every verification would be refused. The boot runs the key self-test (one MAC, one
signature, each checked) and refuses with a message that says what to do.

A token lost and regenerated under the same labels would turn open codes into WRONG_CODE and old proofs
into forgeries. The boot compares the HSM with the key ledger in Redis (the highest version seen of each
kind, the fingerprint of each label) and refuses a token that lacks the newest versions data was written
under, or holds another key under a label seen, unless told to start afresh: then the missing kinds get
new keys above every version seen (docs/decisions/0015).

A key whose value is or was readable or exportable (not sensitive, extractable, or once so) is never served:
the boot reads every key's protection attributes and refuses with its label. A key a PIN holder can still
copy on the token (made before decision 0079) is served, warned about once and counted (`KeyAudit`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sesame.clients.redis_key_ledger import RedisKeyLedger
from sesame.hsm.key_protection import refuse_exposed, warn_copyable
from sesame.hsm.keys import rotate_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.hsm.self_test import prove_current_keys
from sesame.server.domain import key_ledger
from sesame.server.domain.errors import ConfigurationError, HsmUnavailable, KeyNotFound, KeyReplaced
from sesame.server.domain.key_ledger import KeyPrint, KeysSeen
from sesame.server.domain.model import KeyKind, KeyRef, MacAlgorithm
from sesame.server.domain.ports import KeyStore

_log = logging.getLogger("sesame.keys")

# A fixed input no code is ever computed over (OCRA questions start with the suite name): its MAC tells
# one OTP key from another and says nothing about the codes. Eight bytes are plenty to tell keys apart.
FINGERPRINT_INPUT = b"sesame key fingerprint"
FINGERPRINT_BYTES = 8
AFRESH_SETTING = "SESAME_KEYS_START_AFRESH=1 (or `sesame serve --start-afresh`)"


@dataclass(frozen=True, slots=True)
class KeyBootPolicy:
    """What the boot may do to the token besides checking it."""

    create_missing: bool = False  # the development token: Sésame makes its first keys itself
    start_afresh: bool = False  # the operator accepts that keys were lost: new versions above any seen
    # Log the copyable keys found; not in a `sesame serve` worker: its supervisor warned once for them all.
    warn_copyable: bool = True


@dataclass(frozen=True, slots=True)
class KeyAudit:
    """What the boot found of the keys' protection, besides what it refuses."""

    copyable: tuple[str, ...] = ()  # labels of keys a PIN holder can still copy on the token: rotate them


async def ready_keys(
    config: Pkcs11Config, keys: Pkcs11KeyStore, ledger: RedisKeyLedger, policy: KeyBootPolicy, now: datetime
) -> KeyAudit:
    """Check the token against the ledger, make the keys the policy allows, audit, self-test, record.

    Or refuse: ConfigurationError (KeyExposed for an unprotected key) says what was found and what to do.
    """
    seen = await ledger.seen()
    held = await fingerprints(keys)
    if replaced := key_ledger.replaced(seen, held):
        raise _replaced(config.token_label, replaced[0])
    lost = key_ledger.lost(seen, held)
    if lost and not policy.start_afresh:
        raise lost_keys(config.token_label, lost, held)
    for kind in KeyKind:
        if kind in lost or (policy.create_missing and key_ledger.held_top(held, kind) == 0):
            made = await asyncio.to_thread(rotate_keys, config, kind, above=seen.top(kind))
            if kind in lost:
                _log.warning("starting afresh: %s made, above %s seen before", made.label, seen.top(kind))
    await keys.refresh_keys()
    audit = await audit_keys(keys)
    if audit.copyable and policy.warn_copyable:
        warn_copyable(list(audit.copyable))
    await check_usable_keys(keys, config.token_label)
    try:
        await ledger.record(await fingerprints(keys), now)
    except KeyReplaced as exc:
        raise _replaced(config.token_label, exc.label) from None
    return audit


async def audit_keys(keys: Pkcs11KeyStore) -> KeyAudit:
    """Read every key's protection: KeyExposed for the first unprotected one; the copyable ones found.

    Every version, not only the current ones: older OTP keys still verify the codes of open challenges.
    """
    held = await keys.key_protection()
    for info in held:
        refuse_exposed(info)
    return KeyAudit(tuple(info.label for info in held if info.may_be_copied))


async def boot_keys(
    config: Pkcs11Config, keys: Pkcs11KeyStore, redis_url: str, policy: KeyBootPolicy, now: datetime
) -> KeyAudit:
    """`ready_keys` over the key ledger of the Redis at `redis_url` (a connection for the boot only)."""
    ledger = RedisKeyLedger.from_url(redis_url)
    try:
        return await ready_keys(config, keys, ledger, policy, now)
    finally:
        await ledger.close()


async def record_token(config: Pkcs11Config, redis_url: str, now: datetime) -> None:
    """Record the token's keys in the ledger (after a key ceremony). ConfigurationError: a replaced token."""
    keys = await asyncio.to_thread(Pkcs11KeyStore.open, config)
    ledger = RedisKeyLedger.from_url(redis_url)
    try:
        await ledger.record(await fingerprints(keys), now)
    except KeyReplaced as exc:
        raise _replaced(config.token_label, exc.label) from None
    finally:
        await ledger.close()
        await asyncio.to_thread(keys.close)


async def ledger_seen(redis_url: str) -> KeysSeen:
    """What the key ledger saw, read before `sesame keys init|rotate` makes a key: a key made and then
    refused was left to remove with the HSM's tools (`init` on a replacement token), or made twice by a retry
    (`rotate` with Redis away: an outside audit). StoreUnavailable."""
    ledger = RedisKeyLedger.from_url(redis_url)
    try:
        return await ledger.seen()
    finally:
        await ledger.close()


async def record_rotation(config: Pkcs11Config, keys: Pkcs11KeyStore, ledger: RedisKeyLedger) -> None:
    """Record the token's keys in the ledger when a running process finds a newer key, before it uses it.

    `sesame keys rotate` records its key itself, right after the ceremony; killed in between (or run without
    SESAME_REDIS_URL, or with Redis away then), it left a key the servers took up within a minute and the
    ledger never heard of until their next boot: a token restored from before it then booted, and the next
    rotation made that label again, so that the codes sent under the first read WRONG_CODE (decision 0115).
    StoreUnavailable, or ConfigurationError for a label the ledger saw with another key: the newer key is
    then not used.
    """
    try:
        await ledger.record(await fingerprints(keys), datetime.now(UTC))
    except KeyReplaced as exc:
        raise _replaced(config.token_label, exc.label) from None


async def check_usable_keys(keys: KeyStore, token_label: str) -> None:
    """Return when the current OTP and proof keys pass the self-test. ConfigurationError otherwise."""
    try:
        await prove_current_keys(keys)
    except (KeyNotFound, HsmUnavailable) as exc:
        raise ConfigurationError(
            f"the HSM token {token_label!r} has no usable current OTP key and proof key ({exc}): "
            "create them with `sesame keys init`, or restore the token that holds them"
        ) from None


async def fingerprints(keys: Pkcs11KeyStore) -> list[KeyPrint]:
    """Every OTP, proof and journal key the token holds, with its fingerprint (no key material)."""
    held = []
    for version in await keys.versions(KeyKind.OTP):
        mac = await keys.mac(KeyRef.otp(version), FINGERPRINT_INPUT, MacAlgorithm.SHA256)
        held.append(KeyPrint(KeyKind.OTP, version, mac[:FINGERPRINT_BYTES].hex()))
    for public in await keys.public_keys():
        digest = hashlib.sha256(public.x + public.y).digest()
        version = KeyRef(public.kid).version(KeyKind.PROOF)
        held.append(KeyPrint(KeyKind.PROOF, version, digest[:FINGERPRINT_BYTES].hex()))
    for public in await keys.journal_public_keys():
        digest = hashlib.sha256(public.x + public.y).digest()
        version = KeyRef(public.kid).version(KeyKind.JOURNAL)
        held.append(KeyPrint(KeyKind.JOURNAL, version, digest[:FINGERPRINT_BYTES].hex()))
    return held


def lost_keys(token_label: str, lost: Mapping[KeyKind, int], held: list[KeyPrint]) -> ConfigurationError:
    """The refusal of a token that lacks the newest `lost` version of each kind Redis saw."""
    found = ", ".join(
        f"{KeyRef.of(kind, version).label} was used, the token's newest is "
        + (f"v{key_ledger.held_top(held, kind)}" if key_ledger.held_top(held, kind) else "none")
        for kind, version in lost.items()
    )
    return ConfigurationError(
        f"the HSM token {token_label!r} lacks keys Redis holds data under ({found}): it is not the token "
        "that wrote that data. Restore that token; or, accepting that open codes and proofs signed by the "
        f"lost keys no longer verify, start afresh with {AFRESH_SETTING}: new keys then get versions above "
        "every one used"
    )


def _replaced(token_label: str, label: str) -> ConfigurationError:
    return ConfigurationError(
        f"the HSM token {token_label!r} holds {label}, but not the key Redis saw under that label: the token "
        "was replaced or re-initialised. Restore the original token; or remove the keys it made under used "
        f"labels (or use an empty token) and start afresh with {AFRESH_SETTING}"
    )

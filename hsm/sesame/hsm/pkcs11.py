"""`Pkcs11KeyStore`: the `KeyStore` port over a PKCS#11 token (SoftHSM2 in development, an HSM in production).

Secret and private keys never leave the token: MACs, ECDSA signatures and random bytes are computed inside
it. Every call funnels through `Pkcs11KeyStore._call`, which times it (`sesame.server.domain.call_meter`)
and runs it on the caller's thread when it is a short call on a ready session and the module is free, else
on the HSM thread, awaited so the event loop never waits for a search, a reconnect or another thread's call
(docs/decisions/0020-hsm-calls-inline.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from sesame.hsm.key_protection import KeyInfo, check_rotated, describe
from sesame.hsm.self_test import KeyProof
from sesame.hsm.session import Later, Needs, TokenSession, acquire_token, release_token
from sesame.hsm.worker import HsmWorker, hsm_worker
from sesame.server.domain.call_meter import UNMETERED, CallMeter, HsmCall
from sesame.server.domain.errors import HsmUnavailable, KeyNotFound
from sesame.server.domain.model import KeyKind, KeyRef, MacAlgorithm, PublicKey, key_versions
from sesame.server.domain.ports import KeyStore, Probe

T = TypeVar("T")

_log = logging.getLogger("sesame.hsm")

_MECHANISMS = {
    MacAlgorithm.SHA1: Mechanism.SHA_1_HMAC,
    MacAlgorithm.SHA256: Mechanism.SHA256_HMAC,
    MacAlgorithm.SHA512: Mechanism.SHA512_HMAC,
}

# How long a process trusts its idea of the current OTP and proof keys: a rotation made by `sesame keys
# rotate` in another process is picked up within this delay without a restart.
CURRENT_KEY_TTL_SECONDS = 60.0

# DER of the object identifier of the P-256 curve (prime256v1, secp256r1): the CKA_EC_PARAMS of our keys.
P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
_POINT_BYTES = 65  # 0x04 || x || y, uncompressed (SEC 1 section 2.3.3)
# Labels found naming more than one key of a kind, said once per process (`_alone`).
_AMBIGUOUS: set[tuple[str, str]] = set()
# Labels (with their token's) found on key objects that are not private, said once per process (`_held`).
_NOT_OURS: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class Pkcs11Config:
    """Where the keys are: the PKCS#11 module, the token label and the user PIN (never shown in repr)."""

    module: str
    token_label: str
    pin: str = field(repr=False)
    # Make keys without CKA_COPYABLE false, on a token older than PKCS#11 2.40 (decision 0079).
    omit_copyable: bool = False
    # How often the newest keys are read again from the token: a rotation is taken up within this time.
    current_keys_every: float = CURRENT_KEY_TTL_SECONDS


def _objects(token: TokenSession, object_class: ObjectClass) -> list[Any]:
    # The search is finished before any attribute is read, so no failure can leave it open.
    return list(token.session.get_objects({Attribute.CLASS: object_class}))


def versions(token: TokenSession, kind: KeyKind) -> list[int]:
    """Versions of the keys of `kind` on the token that can be used, ascending (HSM thread).

    OTP keys are secret keys; a proof key counts while its private half (the one that signs) is there. A key
    a ceremony did not finish is not one (`_unfinished`).
    """
    return sorted(_held(token, kind))


def _held(token: TokenSession, kind: KeyKind) -> Counter[int]:
    """How many finished secret (OTP) or private keys of `kind` each version's label names.

    Only private objects (CKA_PRIVATE) count: a session without the PIN may generate keys on a SoftHSM token,
    public objects only, readable and exportable; one made under `sesame-proof-v2` while no proof key was
    current was taken up, signed proofs and was published, and its value, read back without the PIN, forged
    proofs `sesame proof verify` accepted (an outside audit). Every key Sésame makes is private; such an
    object is not Sésame's (said once per label).
    """
    object_class = ObjectClass.SECRET_KEY if kind is KeyKind.OTP else ObjectClass.PRIVATE_KEY
    labels = []
    for obj in _objects(token, object_class):
        label = obj[Attribute.LABEL]
        if not key_versions([label], kind) or _unfinished(obj):
            continue
        if obj[Attribute.PRIVATE]:
            labels.append(label)
        elif (token.token_label, label) not in _NOT_OURS:
            _NOT_OURS.add((token.token_label, label))
            _log.error("%s: a key object anyone could have made on the token (not private): not used", label)
    return Counter(KeyRef(label).version(kind) for label in labels)


def _alone(token: TokenSession, label: str, count: int, what: str) -> bool:
    """Whether `label` names one key only; said once per label and process when it names more (an ERROR)."""
    if count > 1 and (token.token_label, label) not in _AMBIGUOUS:
        _AMBIGUOUS.add((token.token_label, label))
        _log.error(
            "%s names %d different %s on the token: neither is published nor signs (remove the one that is "
            "not Sésame's)",
            label,
            count,
            what,
        )
    return count == 1


def _unfinished(obj: Any) -> bool:
    """Whether a secret or private key is one a key ceremony killed halfway left behind (decision 0126).

    SoftHSM writes a new key's file again for each step of its making: its label and template first, its
    value and CKA_LOCAL in the last write. A kill before that write leaves a key under its label that is not
    local and has no value: every MAC or signature with it fails, and taken as the newest it stopped every
    boot and every call that needs a current key. A finished key of ours is local (generated in the HSM); one
    loaded or unwrapped reads ALWAYS_SENSITIVE or NEVER_EXTRACTABLE false, and stays visible so that the boot
    refuses it (decision 0079).
    """
    return not obj[Attribute.LOCAL] and bool(
        obj[Attribute.ALWAYS_SENSITIVE] and obj[Attribute.NEVER_EXTRACTABLE]
    )


def every_key(token: TokenSession) -> list[KeyInfo]:
    """Every OTP key, then every proof and journal private key, oldest first, with its protection."""
    return [
        describe(token, KeyRef.of(kind, version), kind)
        for kind in KeyKind
        for version in versions(token, kind)
    ]


def public_keys(token: TokenSession, kind: KeyKind = KeyKind.PROOF) -> list[PublicKey]:
    """The public half of every key of `kind` (proof unless told) on the token, oldest first (HSM thread).

    Read from the public key objects, so a retired key whose private half was destroyed is still published.
    Only Sésame's halves are (`_ours`). Two under one label (a PIN holder generated another pair): the one
    published was whichever the search gave last, in another order in each process, and the proofs signed
    by the other verified under none (an outside audit). Neither is published: the label is not current, an
    older whole key signs (0154).
    """
    by_version: dict[int, list[Any]] = {}
    for obj in _objects(token, ObjectClass.PUBLIC_KEY):
        label = obj[Attribute.LABEL]
        if key_versions([label], kind):
            by_version.setdefault(KeyRef(label).version(kind), []).append(obj)
    held = _held(token, kind)
    published = []
    for version, objects in sorted(by_version.items()):
        label = KeyRef.of(kind, version).label
        halves = {_public_key(label, obj) for obj in _ours(objects, paired=version in held)}
        if halves and _alone(token, label, len(halves), "public keys"):
            published.append(next(iter(halves)))
    return published


def _ours(halves: list[Any], *, paired: bool) -> list[Any]:
    """The public halves of one label that may be Sésame's.

    Generated in the HSM (CKA_LOCAL): a public key object anyone created on the token (C_CreateObject, from
    a session without the PIN on a token whose public halves are not private) made its own signatures valid
    proofs and seals (an outside audit planted `sesame-proof-v98`; decision 0153). With its point: SoftHSM
    writes it last, so a ceremony killed halfway left a half without (decision 0126). Private (CKA_PRIVATE):
    Sésame's halves are since 0153, and a session without the PIN can generate public ones only, its private
    half readable: published, it let its maker forge proofs (an outside audit). A half made before 0153 is
    not private: it counts while the label's private half is Sésame's (`paired`: the key is held), not once
    retired (its private half destroyed), where a PIN-less pair is not told from it. A P-256 key: a PIN-less
    RSA pair's half has no CKA_EC_POINT, and reading it failed GetProofKeys and every health round.
    """
    made = [
        obj
        for obj in halves
        if obj[Attribute.KEY_TYPE] == KeyType.EC
        and bytes(obj[Attribute.EC_PARAMS]) == P256_PARAMS
        and obj[Attribute.LOCAL]
        and bytes(obj[Attribute.EC_POINT])
    ]
    private = [obj for obj in made if obj[Attribute.PRIVATE]]
    return private or (made if paired else [])


def _public_key(label: str, obj: Any) -> PublicKey:
    params, point = bytes(obj[Attribute.EC_PARAMS]), bytes(obj[Attribute.EC_POINT])
    # CKA_EC_POINT is the DER OCTET STRING of the point (PKCS#11 2.40); some tokens give the bare point.
    if len(point) == _POINT_BYTES + 2 and point[:2] == bytes([0x04, _POINT_BYTES]):
        point = point[2:]
    if params != P256_PARAMS or len(point) != _POINT_BYTES or point[0] != 0x04:
        raise HsmUnavailable(f"{label} is not an uncompressed P-256 public key")
    return PublicKey(kid=label, x=point[1:33], y=point[33:])


def _current_keys(token: TokenSession) -> dict[KeyKind, KeyRef | None]:
    current = _newest_keys(token)
    # A kind without a key: read again if the module re-read a token restored behind its back (decision 0087).
    if None in current.values() and token.reread_if_restored():
        current = _newest_keys(token)
    return current


def _newest_keys(token: TokenSession) -> dict[KeyKind, KeyRef | None]:
    current: dict[KeyKind, KeyRef | None] = {}
    for kind in KeyKind:
        held = signing_versions(token, kind)
        current[kind] = KeyRef.of(kind, held[-1]) if held else None
    return current


def signing_versions(token: TokenSession, kind: KeyKind) -> list[int]:
    """The versions of `kind` that may be current, ascending (HSM thread): a proof or journal key also needs
    its public half, generated in the HSM.

    A signature nobody can check proves nothing: with the public half of the newest proof key destroyed (by a
    PIN holder, or before decision 0153 by a session without the PIN), VerifyChallenge spent codes with
    proofs no published key verified (an outside audit). Such a key is not current; an older whole one is,
    or none (KeyNotFound: health NOT_SERVING, a proof from GetProof once a ceremony made a key; decision
    0154). `versions` still counts it, so that no ceremony makes its label again.
    """
    held = _held(token, kind)
    if kind is KeyKind.OTP:
        return sorted(held)
    published = {KeyRef(key.kid).version(kind) for key in public_keys(token, kind)}
    return [
        version
        for version, count in sorted(held.items())
        if version in published and _alone(token, KeyRef.of(kind, version).label, count, "private keys")
    ]


def has_public_half(token: TokenSession, key: KeyRef) -> bool:
    """Whether the token holds one public half of `key` that is Sésame's (`_ours`; HSM thread, a search)."""
    # The search finished before any attribute is read, as `_objects`'s: no failure leaves it open.
    found = list(
        token.session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: key.label})
    )
    halves = _ours(found, paired=True)  # the current key's: its private half is held
    return len({bytes(obj[Attribute.EC_POINT]) for obj in halves}) == 1  # one, or it is not whole


@dataclass(slots=True)
class _CurrentKeys:
    """The newest OTP and proof keys as last read from the token, shared by a store and its metered view."""

    keys: dict[KeyKind, KeyRef | None] = field(default_factory=dict)
    read_at: float = float("-inf")
    every: float = CURRENT_KEY_TTL_SECONDS  # seconds between reads (`Pkcs11Config.current_keys_every`)
    # Awaited when a re-read finds a newer key, before it is used (the key ledger's record, decision 0115).
    before_use: Callable[[], Awaitable[None]] | None = None
    # The steps back to an older key said (current, older), once each (`refresh_keys`).
    said: set[tuple[KeyRef, KeyRef]] = field(default_factory=set)


class Pkcs11KeyStore:
    """The real key store. Open with `Pkcs11KeyStore.open(config)`, release with `close()`."""

    def __init__(
        self,
        worker: HsmWorker,
        token: TokenSession,
        meter: CallMeter = UNMETERED,
        current: _CurrentKeys | None = None,
    ) -> None:
        self._worker = worker
        self._token: TokenSession | None = token
        self._meter = meter
        self._current = current or _CurrentKeys()
        self._owns_token = True
        self._proof = KeyProof()  # the health probe's self-test, run every few rounds (decision 0039)

    def __repr__(self) -> str:
        label = self._token.token_label if self._token is not None else None
        return f"Pkcs11KeyStore(token_label={label!r})"

    @classmethod
    def open(cls, config: Pkcs11Config) -> Pkcs11KeyStore:
        """Log in to the token (blocking; call it off the event loop) and read the current keys.

        HsmUnavailable if the module, the token or the login fails.
        """
        worker = hsm_worker(config.module)
        token = worker.run(lambda: acquire_token(worker, config.token_label, config.pin))
        store = cls(worker, token, current=_CurrentKeys(every=config.current_keys_every))
        store._remember(worker.run(lambda: token.call(_current_keys)))
        return store

    def metered(self, meter: CallMeter) -> Pkcs11KeyStore:
        """A view of this store whose calls report to `meter`; it shares the session and the current keys.

        The service meters its traffic through the view and probes health through this store, unmetered.
        Closing the view only stops it; the session stays this store's to release.
        """
        view = Pkcs11KeyStore(self._worker, self._live(), meter, self._current)
        view._owns_token = False
        return view

    def before_rotated_keys_are_used(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Await `hook` when a re-read finds a key newer than the current one, before that key is used by this
        store or its views; if it raises, the newer key is not taken and the next call that needs a current
        key reads the token (and awaits it) again. The server records the token's keys in the key ledger
        there: a key made by a `sesame keys rotate` killed before its own record, or run without
        SESAME_REDIS_URL, is remembered before any challenge or proof names it (decision 0115)."""
        self._current.before_use = hook

    def close(self) -> None:
        """Release the session (the last user of the token logs out). Idempotent."""
        token, self._token = self._token, None
        if token is not None and self._owns_token:
            self._worker.run(lambda: release_token(token))

    async def mac(self, key: KeyRef, data: bytes, algorithm: MacAlgorithm) -> bytes:
        """HMAC of `data` under `key`, computed in the HSM. KeyNotFound, HsmUnavailable."""
        mechanism = _MECHANISMS[algorithm]
        return await self._with_key(
            "mac",
            key,
            lambda live: live.signed(live.secret_key(key.label), mechanism, data),
            (ObjectClass.SECRET_KEY, key.label),
        )

    async def random(self, n: int) -> bytes:
        """`n` bytes from the HSM's random generator. HsmUnavailable."""
        if n < 1:
            raise ValueError("random(n) needs n >= 1")
        return await self._call(
            "random", lambda live: bytes(live.session.generate_random(8 * n)), Needs.SESSION
        )

    async def check(self) -> None:
        """Return when the token answers and its current keys work. KeyNotFound, HsmUnavailable (health).

        A random byte and the current keys' presence every round, the key self-test (two MACs, one
        signature, all checked) every SELF_TEST_EVERY rounds and whenever the current keys change: a token
        that answers but lost or damaged a key would fail every call, so it must not read SERVING for long.
        """
        # Through the funnel like every call: the reconnect policy applies, so a probe after a token reset
        # reopens the session; a probe stuck behind the module's lock waits on the HSM thread, not the loop.
        await self.random(1)
        await self._current_keys_present()
        await self._proof.check(self)

    async def _current_keys_present(self) -> None:
        """Return when the current OTP key and proof key are still on the token. KeyNotFound once one is gone.

        Each cached handle's label is read (C_GetAttributeValue, about 25 µs on the caller's thread, no
        search): a key deleted since, by any process, fails that read (SoftHSM checks the object's file, an
        HSM its handle), the session is reopened and the search finds nothing. Every round, so that a key
        deleted while serving reads NOT_SERVING at the next round of every worker, not at its next
        self-test, up to SELF_TEST_EVERY rounds later (decision 0118); whether the key still works is the
        self-test's. The proof key's public half is searched for (it has no cached handle): gone, the round
        fails and the next call reads the current keys again, so that no proof is signed by a key nobody can
        check for longer than a round (decision 0154).
        """
        await self._present(ObjectClass.SECRET_KEY, await self.current_otp_key())
        signer = await self.current_proof_key()
        await self._present(ObjectClass.PRIVATE_KEY, signer)
        if not await self._call("key_present", lambda live: has_public_half(live, signer), Needs.SEARCH):
            self._current.read_at = float("-inf")  # the next call that needs a key reads the token again
            raise HsmUnavailable(
                f"{signer.label} is not whole in the token (no public half, or two): it is no longer current"
            )

    async def _present(self, object_class: ObjectClass, key: KeyRef) -> None:
        def label(live: TokenSession) -> str:
            return str(live.key(object_class, key.label)[Attribute.LABEL])

        if await self._call("key_present", label, (object_class, key.label)) != key.label:
            raise HsmUnavailable(f"the HSM handle of {key.label} names another object")

    async def sign(self, key: KeyRef, data: bytes) -> bytes:
        """ES256 signature of `data` (raw r || s) by the private half of `key`, in the HSM.

        CKM_ECDSA over SHA-256(data) hashed here: every PKCS#11 token has CKM_ECDSA (SoftHSM 2.6 has no
        CKM_ECDSA_SHA256), only 32 bytes cross to the token, and the output is the JWS form already.
        KeyNotFound, HsmUnavailable.
        """
        digest = hashlib.sha256(data).digest()
        signature = await self._with_key(
            "sign",
            key,
            lambda live: live.signed(live.private_key(key.label), Mechanism.ECDSA, digest),
            (ObjectClass.PRIVATE_KEY, key.label),
        )
        if len(signature) != 64:
            raise HsmUnavailable("the HSM gave an ECDSA signature that is not P-256 r || s")
        return signature

    async def public_keys(self) -> list[PublicKey]:
        """The public half of every proof key on the token, oldest first. HsmUnavailable."""
        return await self._call("public_keys", public_keys, Needs.SEARCH)

    async def journal_public_keys(self) -> list[PublicKey]:
        """The public half of every journal key on the token, oldest first: old seals keep verifying."""
        return await self._call("public_keys", lambda live: public_keys(live, KeyKind.JOURNAL), Needs.SEARCH)

    async def current_journal_key(self) -> KeyRef:
        """The newest journal key, which new seals are signed with (re-read like the OTP key). KeyNotFound."""
        return await self._current_key(KeyKind.JOURNAL)

    async def versions(self, kind: KeyKind) -> list[int]:
        """The versions of `kind` the token holds and can use, ascending. HsmUnavailable."""
        return await self._call("versions", lambda live: versions(live, kind), Needs.SEARCH)

    async def current_otp_key(self) -> KeyRef:
        """The newest OTP key (re-read from the token at most every `current_keys_every`). KeyNotFound."""
        return await self._current_key(KeyKind.OTP)

    async def current_proof_key(self) -> KeyRef:
        """The newest proof key (re-read like the OTP key). KeyNotFound."""
        return await self._current_key(KeyKind.PROOF)

    async def refresh_keys(self) -> None:
        """Re-read the newest OTP and proof keys from the token now (after a rotation).

        A key that becomes current, in place of another or of none, is checked first (`check_rotated`): one
        that is or was readable or exportable raises KeyExposed and is not used; nor are the previous keys
        (every call that needs a current key reads the token again and is refused), so the service fails
        closed until it is withdrawn. A kind without a current key before was not checked: a key planted
        then was taken up unchecked (an outside audit). The first read, at a process's boot, follows the
        boot's own check of every key (`key_protection`).
        """
        before = self._current.keys
        current = await self._call("current_keys", _current_keys, Needs.SEARCH)
        rotated = {
            kind: key
            for kind, key in current.items()
            if key is not None and before and before.get(kind) != key
        }
        for kind, key in rotated.items():
            was = before.get(kind)
            if (
                was is not None
                and key.version(kind) < was.version(kind)
                and (was, key) not in self._current.said
            ):
                # Decision 0154 lets an older whole key sign; a rotation away from it (a key suspected
                # compromised) is then undone, which nobody saw (an outside audit): said, once per step back
                # (every second while the ledger refused its record: an audit).
                self._current.said.add((was, key))
                _log.error("%s is not whole on the token: %s is current again", was.label, key.label)
        if rotated:  # once per rotation picked up: never on a call's path otherwise
            self._current.read_at = float("-inf")  # until the new keys pass, the previous ones are stale
            await self._call("key_protection", lambda live: check_rotated(live, rotated), Needs.SEARCH)
            if self._current.before_use is not None:
                await self._current.before_use()
        self._remember(current)

    async def key_protection(self) -> list[KeyInfo]:
        """Every key of Sésame's on the token with its protection attributes (boot only). HsmUnavailable."""
        return await self._call("key_protection", every_key, Needs.SEARCH)

    async def _current_key(self, kind: KeyKind) -> KeyRef:
        stale = time.monotonic() - self._current.read_at > self._current.every
        if stale or self._current.keys.get(kind) is None:
            await self.refresh_keys()
        current = self._current.keys.get(kind)
        if current is None:
            # A failure of the HSM's as any: SesameHsmErrors fires (a token without a current OTP key answered
            # every Start INTERNAL, and one without a proof key every VERIFIED without its proof, uncounted).
            self._meter.failed("current_keys")
            raise KeyNotFound(f"no {kind.prefix}<N> key in the HSM; run `sesame keys init`")
        return current

    def _remember(self, current: dict[KeyKind, KeyRef | None]) -> None:
        self._current.keys = current
        self._current.read_at = time.monotonic()

    def _live(self) -> TokenSession:
        if self._token is None:
            raise HsmUnavailable("the key store is closed")
        return self._token

    async def _with_key(
        self, call: HsmCall, key: KeyRef, op: Callable[[TokenSession], T], needs: tuple[ObjectClass, str]
    ) -> T:
        """`_call` with `key`. A current key found gone is the HSM's failure, counted, and the current keys
        are read again at the next call that needs one: Starts answered INTERNAL uncounted for the minute the
        current keys are kept (an outside audit). An older key's absence is the caller's to judge (a code of
        a key version destroyed after its codes expired)."""
        try:
            return await self._call(call, op, needs)
        except KeyNotFound:
            if key in self._current.keys.values():
                self._meter.failed(call)
                self._current.read_at = float("-inf")
            raise

    async def _call(
        self, call: HsmCall, op: Callable[[TokenSession], T], needs: tuple[ObjectClass, str] | Needs
    ) -> T:
        """Run `op` where it is cheapest, timed and reported under `call`: the one funnel of every HSM call.

        `needs` is the key handle `op` uses, or what else it needs: a short call on a ready session runs here
        and now; a search, or anything that failed here, goes to the HSM thread and its reconnect policy.
        """
        start = time.perf_counter()
        try:
            token = self._live()
            now = token.try_now(op, needs)
            result = await self._worker.call(lambda: token.call(op)) if isinstance(now, Later) else now
        except HsmUnavailable:
            self._meter.failed(call)
            raise
        finally:
            self._meter.observe(call, time.perf_counter() - start)
        return result


_: type[KeyStore] = Pkcs11KeyStore
_probe: type[Probe] = Pkcs11KeyStore

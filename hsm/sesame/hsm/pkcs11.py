"""`Pkcs11KeyStore`: the `KeyStore` port over a PKCS#11 token (SoftHSM2 in development, an HSM in production).

Secret keys never leave the token: MACs and random bytes are computed inside it. Every call runs on the
process's HSM thread (`sesame.hsm.worker`); the async methods await it, so the event loop never blocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pkcs11 import Attribute, Mechanism, ObjectClass

from sesame.hsm.session import TokenSession, acquire_token, release_token
from sesame.hsm.worker import HsmWorker, hsm_worker
from sesame.server.domain.errors import HsmUnavailable, KeyNotFound
from sesame.server.domain.model import OTP_KEY_PREFIX, KeyRef, MacAlgorithm
from sesame.server.domain.ports import KeyStore, Probe

T = TypeVar("T")

_MECHANISMS = {
    MacAlgorithm.SHA1: Mechanism.SHA_1_HMAC,
    MacAlgorithm.SHA256: Mechanism.SHA256_HMAC,
    MacAlgorithm.SHA512: Mechanism.SHA512_HMAC,
}

# How long a process trusts its idea of the current OTP key: a rotation made by `sesame keys rotate` in
# another process is picked up within this delay without a restart.
OTP_KEY_TTL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Pkcs11Config:
    """Where the keys are: the PKCS#11 module, the token label and the user PIN (never shown in repr)."""

    module: str
    token_label: str
    pin: str = field(repr=False)


def otp_versions(token: TokenSession) -> list[int]:
    """Versions of the `sesame-otp-v<N>` secret keys on the token, ascending (HSM thread)."""
    versions = []
    # The search is finished before any attribute is read, so no failure can leave it open.
    keys = list(token.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))
    for obj in keys:
        label = obj[Attribute.LABEL]
        suffix = label.removeprefix(OTP_KEY_PREFIX)
        if label.startswith(OTP_KEY_PREFIX) and suffix.isdigit():
            versions.append(int(suffix))
    return sorted(versions)


def _current_otp_key(token: TokenSession) -> KeyRef | None:
    versions = otp_versions(token)
    return KeyRef.otp(versions[-1]) if versions else None


class Pkcs11KeyStore:
    """The real key store. Open with `Pkcs11KeyStore.open(config)`, release with `close()`."""

    def __init__(self, worker: HsmWorker, token: TokenSession) -> None:
        self._worker = worker
        self._token: TokenSession | None = token
        self._current: KeyRef | None = None
        self._current_read_at = float("-inf")

    def __repr__(self) -> str:
        label = self._token.token_label if self._token is not None else None
        return f"Pkcs11KeyStore(token_label={label!r})"

    @classmethod
    def open(cls, config: Pkcs11Config) -> Pkcs11KeyStore:
        """Log in to the token (blocking; call it off the event loop) and read the current OTP key.

        HsmUnavailable if the module, the token or the login fails.
        """
        worker = hsm_worker(config.module)
        token = worker.run(lambda: acquire_token(worker, config.token_label, config.pin))
        store = cls(worker, token)
        store._remember(worker.run(lambda: token.call(_current_otp_key)))
        return store

    def close(self) -> None:
        """Release the session (the last user of the token logs out). Idempotent."""
        token, self._token = self._token, None
        if token is not None:
            self._worker.run(lambda: release_token(token))

    async def mac(self, key: KeyRef, data: bytes, algorithm: MacAlgorithm) -> bytes:
        """HMAC of `data` under `key`, computed in the HSM. KeyNotFound, HsmUnavailable."""
        mechanism = _MECHANISMS[algorithm]
        return await self._call(
            lambda live: bytes(live.secret_key(key.label).sign(data, mechanism=mechanism))
        )

    async def random(self, n: int) -> bytes:
        """`n` bytes from the HSM's random generator. HsmUnavailable."""
        if n < 1:
            raise ValueError("random(n) needs n >= 1")
        return await self._call(lambda live: bytes(live.session.generate_random(8 * n)))

    async def check(self) -> None:
        """Return when the token answers a one-byte random request. HsmUnavailable (health watcher)."""
        # On the HSM thread like every call, so a probe also notices a thread stuck in the module; the
        # reconnect policy applies, so a probe after a token reset reopens the session.
        await self.random(1)

    async def current_otp_key(self) -> KeyRef:
        """The newest OTP key (re-read from the token at most every OTP_KEY_TTL_SECONDS). KeyNotFound."""
        if self._current is None or time.monotonic() - self._current_read_at > OTP_KEY_TTL_SECONDS:
            await self.refresh_otp_key()
        if self._current is None:
            raise KeyNotFound(f"no {OTP_KEY_PREFIX}<N> key in the HSM; run `sesame keys init`")
        return self._current

    async def refresh_otp_key(self) -> None:
        """Re-read the newest OTP key from the token now (after a rotation)."""
        self._remember(await self._call(_current_otp_key))

    def _remember(self, current: KeyRef | None) -> None:
        self._current = current
        self._current_read_at = time.monotonic()

    def _live(self) -> TokenSession:
        if self._token is None:
            raise HsmUnavailable("the key store is closed")
        return self._token

    async def _call(self, op: Callable[[TokenSession], T]) -> T:
        token = self._live()
        return await self._worker.call(lambda: token.call(op))


_: type[KeyStore] = Pkcs11KeyStore
_probe: type[Probe] = Pkcs11KeyStore

"""An in-memory KeyStore over stdlib hmac, with the semantics of `Pkcs11KeyStore` (the contract suite)."""

from __future__ import annotations

import hmac
import secrets

from sesame.server.domain.errors import KeyNotFound
from sesame.server.domain.model import OTP_KEY_PREFIX, KeyRef, MacAlgorithm
from sesame.server.domain.ports import KeyStore

_HASHES = {MacAlgorithm.SHA1: "sha1", MacAlgorithm.SHA256: "sha256", MacAlgorithm.SHA512: "sha512"}


class FakeKeyStore:
    """Keys are a dict label -> secret; MACs by `hmac`, random bytes by `secrets`."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def add_key(self, label: str, secret: bytes) -> KeyRef:
        """Hold `secret` under `label` (as `import_secret` does in the HSM)."""
        if label in self.keys:
            raise ValueError(f"a key labelled {label!r} already exists")
        self.keys[label] = secret
        return KeyRef(label)

    async def mac(self, key: KeyRef, data: bytes, algorithm: MacAlgorithm) -> bytes:
        """HMAC of `data` under the key. KeyNotFound."""
        try:
            secret = self.keys[key.label]
        except KeyError:
            raise KeyNotFound("no such key in the fake key store") from None
        return hmac.new(secret, data, _HASHES[algorithm]).digest()

    async def random(self, n: int) -> bytes:
        """`n` random bytes."""
        if n < 1:
            raise ValueError("random(n) needs n >= 1")
        return secrets.token_bytes(n)

    async def current_otp_key(self) -> KeyRef:
        """The highest `sesame-otp-v<N>` key. KeyNotFound."""
        versions = [
            int(label.removeprefix(OTP_KEY_PREFIX))
            for label in self.keys
            if label.startswith(OTP_KEY_PREFIX) and label.removeprefix(OTP_KEY_PREFIX).isdigit()
        ]
        if not versions:
            raise KeyNotFound("no OTP key in the fake key store")
        return KeyRef.otp(max(versions))


_: type[KeyStore] = FakeKeyStore

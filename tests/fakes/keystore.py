"""An in-memory KeyStore over stdlib hmac and `cryptography`, with the semantics of `Pkcs11KeyStore`."""

from __future__ import annotations

import hmac
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sesame.server.domain.errors import KeyNotFound
from sesame.server.domain.model import KeyKind, KeyRef, MacAlgorithm, PublicKey, key_versions
from sesame.server.domain.ports import KeyStore

_HASHES = {MacAlgorithm.SHA1: "sha1", MacAlgorithm.SHA256: "sha256", MacAlgorithm.SHA512: "sha512"}


class FakeKeyStore:
    """Secrets by label, EC P-256 proof keys by label, random bytes by `secrets`."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.proof_keys: dict[str, ec.EllipticCurvePrivateKey] = {}

    def add_key(self, label: str, secret: bytes) -> KeyRef:
        """Hold `secret` under `label` (as `import_secret` does in the HSM)."""
        self._refuse_existing(label)
        self.keys[label] = secret
        return KeyRef(label)

    def add_proof_key(self, version: int) -> KeyRef:
        """Generate the P-256 key pair `sesame-proof-v<version>` (as `rotate_keys` does in the HSM)."""
        key = KeyRef.proof(version)
        self._refuse_existing(key.label)
        self.proof_keys[key.label] = ec.generate_private_key(ec.SECP256R1())
        return key

    def _refuse_existing(self, label: str) -> None:
        if label in self.keys or label in self.proof_keys:
            raise ValueError(f"a key labelled {label!r} already exists")

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
        versions = key_versions(self.keys, KeyKind.OTP)
        if not versions:
            raise KeyNotFound("no OTP key in the fake key store")
        return KeyRef.otp(versions[-1])

    async def sign(self, key: KeyRef, data: bytes) -> bytes:
        """ES256 signature of `data`, raw r || s. KeyNotFound."""
        try:
            private = self.proof_keys[key.label]
        except KeyError:
            raise KeyNotFound("no such proof key in the fake key store") from None
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    async def public_keys(self) -> list[PublicKey]:
        """The public half of every proof key, oldest first."""
        result = []
        for version in key_versions(self.proof_keys, KeyKind.PROOF):
            label = KeyRef.proof(version).label
            numbers = self.proof_keys[label].public_key().public_numbers()
            result.append(PublicKey(label, numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")))
        return result

    async def current_proof_key(self) -> KeyRef:
        """The highest `sesame-proof-v<N>` key. KeyNotFound."""
        versions = key_versions(self.proof_keys, KeyKind.PROOF)
        if not versions:
            raise KeyNotFound("no proof key in the fake key store")
        return KeyRef.proof(versions[-1])


_: type[KeyStore] = FakeKeyStore

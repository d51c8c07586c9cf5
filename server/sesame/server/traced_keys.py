"""A span per HSM call at the KeyStore port: each call of a flow to the key store, a child of the RPC's span.

At the port, around the metered view the flows use, rather than in `Pkcs11KeyStore._call`: that funnel
also serves the health probes (a span a second with no call above it), and `TokenSession.call` runs on the
HSM thread, where the RPC's span is not current.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from opentelemetry import trace

from sesame.server.domain.model import KeyRef, MacAlgorithm, PublicKey
from sesame.server.domain.ports import KeyStore
from sesame.server.tracing import recording

T = TypeVar("T")
_tracer = trace.get_tracer("sesame.hsm")


class TracedKeyStore:
    """A KeyStore whose every call is a client span `hsm <call>`; attributes name the key, never data."""

    def __init__(self, inner: KeyStore) -> None:
        self._inner = inner

    async def mac(self, key: KeyRef, data: bytes, algorithm: MacAlgorithm) -> bytes:
        """The inner key store's MAC, in a span."""
        return await _traced("mac", self._inner.mac(key, data, algorithm), key)

    async def random(self, n: int) -> bytes:
        """The inner key store's random bytes, in a span."""
        return await _traced("random", self._inner.random(n))

    async def current_otp_key(self) -> KeyRef:
        """The inner key store's current OTP key, in a span (mostly a cache hit)."""
        return await _traced("current_otp_key", self._inner.current_otp_key())

    async def sign(self, key: KeyRef, data: bytes) -> bytes:
        """The inner key store's signature, in a span."""
        return await _traced("sign", self._inner.sign(key, data), key)

    async def public_keys(self) -> list[PublicKey]:
        """The inner key store's public keys, in a span."""
        return await _traced("public_keys", self._inner.public_keys())

    async def current_proof_key(self) -> KeyRef:
        """The inner key store's current proof key, in a span (mostly a cache hit)."""
        return await _traced("current_proof_key", self._inner.current_proof_key())


async def _traced(call: str, awaitable: Awaitable[T], key: KeyRef | None = None) -> T:
    if not recording():
        return await awaitable
    attributes = {"sesame.hsm.call": call}
    if key is not None:
        attributes["sesame.key.label"] = key.label
    with _tracer.start_as_current_span(f"hsm {call}", kind=trace.SpanKind.CLIENT, attributes=attributes):
        return await awaitable


_: type[KeyStore] = TracedKeyStore

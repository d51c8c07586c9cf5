"""Who is calling: the identity a verified client certificate gives, and the refusal of a caller.

The identity is the certificate's first URI subject alternative name (a SPIFFE id, say), else its first
DNS name, else, when it has neither, its subject common name (RFC 6125 ignores the CN once DNS names are
present; we do the same for URIs). One name per certificate keeps the policy and the logs unambiguous:
issue each calling service a certificate whose first URI or DNS name is the one its policy entry uses.
gRPC only fills these properties after verifying the chain against SESAME_TLS_CLIENT_CA_FILE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar

from sesame.server.domain.errors import SesameError

# gRPC's auth-context properties, most preferred first (grpc/grpc_security_constants.h).
_IDENTITY_PROPERTIES = ("peer_uri", "peer_dns", "x509_common_name")

# The caller of the RPC being served. The authorization interceptor sets it around the servicer, so a
# servicer or a flow reached from it can read it; the journal will record it (evidence work) by passing
# `current_caller()` into the request context the servicers build.
_CALLER: ContextVar[str | None] = ContextVar("sesame_caller", default=None)


class CallerNotAllowed(SesameError):
    """The caller's policy does not grant this RPC (or the caller has no verified identity)."""

    def __init__(self, method: str, caller: str | None) -> None:
        super().__init__(method)
        self.method = method
        self.caller = caller


def caller_identity(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The verified caller's identity from gRPC's auth context; None without a client certificate."""
    for name in _IDENTITY_PROPERTIES:
        for value in auth_context.get(name, ()):
            # Names in certificates are ASCII (IA5String); a stray byte must not stop the call.
            return value.decode("utf-8", errors="replace")
    return None


def current_caller() -> str | None:
    """The identity of the caller of the RPC being served; None in plaintext or outside a call."""
    return _CALLER.get()


@contextlib.contextmanager
def calling_as(caller: str | None) -> Iterator[None]:
    """Within the block, `caller` is the current caller (the authorization interceptor's seam)."""
    token = _CALLER.set(caller)
    try:
        yield
    finally:
        # A response stream given up at a `yield` (its caller gone while an answer waited to leave) is
        # closed by asyncio's finalizer in a task of its own, where the call's token cannot be reset
        # (ValueError "created in a different Context"): that context is not the call's, nothing to undo
        # there (decision 0141).
        with contextlib.suppress(ValueError):
            _CALLER.reset(token)

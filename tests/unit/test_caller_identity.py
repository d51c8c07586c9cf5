"""The identity of a caller, read from gRPC's auth context of a verified client certificate."""

from __future__ import annotations

from sesame.server.grpc.callers import caller_identity, calling_as, current_caller

# What grpc.aio reports for a client certificate with SAN DNS a, URI spiffe://b, DNS c and CN d.
FULL = {
    "transport_security_type": [b"ssl"],
    "x509_common_name": [b"d"],
    "x509_subject_alternative_name": [b"a.internal", b"spiffe://bank/b", b"c.internal"],
    "peer_dns": [b"a.internal", b"c.internal"],
    "peer_uri": [b"spiffe://bank/b"],
}


def test_a_uri_name_comes_first() -> None:
    """With URI and DNS names, the first URI is the identity."""
    assert caller_identity(FULL) == "spiffe://bank/b"


def test_the_first_dns_name_without_a_uri() -> None:
    """With DNS names only, the first one is the identity."""
    context = {k: v for k, v in FULL.items() if k != "peer_uri"}
    assert caller_identity(context) == "a.internal"


def test_the_common_name_without_alternative_names() -> None:
    """A certificate with no URI or DNS name is known by its subject CN."""
    context = {"transport_security_type": [b"ssl"], "x509_common_name": [b"d"]}
    assert caller_identity(context) == "d"


def test_no_identity_in_plaintext() -> None:
    """A plaintext call (or TLS without a client certificate) has no identity."""
    plaintext = {"transport_security_type": [b"insecure"], "security_level": [b"TSI_SECURITY_NONE"]}
    assert caller_identity(plaintext) is None
    assert caller_identity({}) is None


def test_the_current_caller_is_set_only_within_the_call() -> None:
    """`calling_as` sets the caller servicers read, and restores the previous value after."""
    assert current_caller() is None
    with calling_as("a.internal"):
        assert current_caller() == "a.internal"
    assert current_caller() is None

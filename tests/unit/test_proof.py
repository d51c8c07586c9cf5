"""The proof's claims, signing input and JWK form: pure functions, no key involved."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from sesame.server.domain import proof
from sesame.server.domain.errors import JournalDisagrees
from sesame.server.domain.model import PublicKey, RequestContext
from sesame.server.domain.operation import Login, digest
from sesame.server.domain.proof import ProofFacts

AT = datetime(2026, 11, 25, 12, 0, 30, 123456, tzinfo=UTC)
CONTEXT = RequestContext(ip="203.0.113.7", device_id="dev-1", session_id="sess-1", user_agent="app/1.0")
FACTS = ProofFacts(
    challenge_id="00ff.k3.d6",
    user_id="alice",
    client_id="acme",
    op="credit_transfer",
    op_digest="ab" * 32,
    key_version=3,
    attempts=2,
    verified_at=AT,
    context=CONTEXT,
)
SIGNATURE = bytes(range(64))


def a_jws(kid: str = "sesame-proof-v1") -> str:
    signed = proof.signing_input(kid, proof.claims(FACTS, issuer="MaBanque", jti="j-1"))
    return proof.compact(signed, SIGNATURE)


def test_claims_state_who_what_how_when_and_where() -> None:
    """The claims name the user, client, challenge, operation digest, key, instant, attempts and context."""
    assert proof.claims(FACTS, issuer="MaBanque", jti="j-1") == {
        "iss": "MaBanque",
        "sub": "alice",
        "client_id": "acme",
        "challenge_id": "00ff.k3.d6",
        "op": "credit_transfer",
        "op_digest": "ab" * 32,
        "amr": ["otp", "sms"],
        "key_version": 3,
        "iat": int(AT.timestamp()),
        "attempts": 2,
        "jti": "j-1",
        "ctx": {"ip": "203.0.113.7", "device_id": "dev-1", "session_id": "sess-1"},
    }


def test_context_fields_the_caller_did_not_send_are_left_out() -> None:
    """Only the forwarded context fields appear, and no ctx at all when none was forwarded."""
    partial = proof.claims(
        ProofFacts(**{**_fields(FACTS), "context": RequestContext(ip="192.0.2.1")}), issuer="b", jti="j"
    )
    assert partial["ctx"] == {"ip": "192.0.2.1"}
    assert "ctx" not in proof.claims(
        ProofFacts(**{**_fields(FACTS), "context": RequestContext()}), issuer="b", jti="j"
    )


def _fields(facts: ProofFacts) -> dict[str, object]:
    return {name: getattr(facts, name) for name in ProofFacts.__slots__}


def test_canonical_json_sorts_keys_without_spaces() -> None:
    """One value, one byte string: sorted keys, no whitespace, UTF-8 left as is."""
    assert proof.canonical_json({"b": 1, "a": ["x", "é"]}) == '{"a":["x","é"],"b":1}'.encode()


def test_the_header_names_the_algorithm_the_key_and_the_type() -> None:
    """The protected header is exactly alg ES256, the kid and typ sesame-proof+jwt."""
    assert proof.parse(a_jws("sesame-proof-v7")).header == {
        "alg": "ES256",
        "kid": "sesame-proof-v7",
        "typ": "sesame-proof+jwt",
    }


def test_a_proof_reads_back_as_it_was_built() -> None:
    """parse() gives back the claims, the signed bytes and the signature."""
    jws = a_jws()
    parsed = proof.parse(jws)
    assert parsed.claims == proof.claims(FACTS, issuer="MaBanque", jti="j-1")
    assert parsed.signing_input == jws.rsplit(".", 1)[0].encode()
    assert parsed.signature == SIGNATURE


def test_the_signing_input_is_deterministic() -> None:
    """The same facts, issuer and jti always give the same bytes to sign."""
    build = lambda: proof.signing_input("k", proof.claims(FACTS, issuer="b", jti="j"))  # noqa: E731
    assert build() == build()


def _unused_bits_set(jws: str) -> str:
    """`jws` with its last character's unused bits set: the same bytes decoded, another text."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return jws[:-1] + alphabet[alphabet.index(jws[-1]) | 1]


@pytest.mark.parametrize(
    "jws",
    [
        "only.two",
        "a.b.c.d",
        "!!!.e30.AAAA",
        "e30.e30." + proof.b64url(SIGNATURE),  # no alg, typ, kid
        proof.b64url(b'{"alg":"none","kid":"k","typ":"sesame-proof+jwt"}')
        + ".e30."
        + proof.b64url(SIGNATURE),
        a_jws().rsplit(".", 1)[0] + "." + proof.b64url(SIGNATURE[:63]),
        a_jws() + "=",
        _unused_bits_set(a_jws()),
    ],
)
def test_what_is_not_one_of_our_proofs_is_refused(jws: str) -> None:
    """Malformed parts, another algorithm, a short signature, padding, or a signature's text that is not the
    one encoding of its bytes (an outside audit: four texts of one signature verified) are ValueError."""
    with pytest.raises(ValueError):
        proof.parse(jws)


def test_a_signature_of_the_wrong_length_is_never_serialised() -> None:
    """compact() refuses anything but 64 bytes of r || s."""
    with pytest.raises(ValueError):
        proof.compact(b"a.b", b"\x00" * 72)


def test_a_public_key_is_an_rfc7518_ec_jwk() -> None:
    """The JWK carries kty, crv, unpadded x and y, the kid, alg and use."""
    key = PublicKey("sesame-proof-v2", b"\x01" * 32, b"\x02" * 32)
    assert proof.jwk_set([key]) == {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "x": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
                "y": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI",
                "kid": "sesame-proof-v2",
                "alg": "ES256",
                "use": "sig",
            }
        ]
    }


def _journal(op: str) -> list[dict[str, str]]:
    """A login's opening naming `op`, and its VERIFIED decision."""
    login = Login()
    named = {"challenge_id": "c", "user_id": "u", "client_id": "acme", "op_digest": digest(login).hex()}
    encoded = base64.urlsafe_b64encode(login.encode()).decode().rstrip("=")
    opened = {"event": "challenge.opened", **named, "op": op, "operation": encoded}
    verified = {"event": "challenge.verification", **named, "outcome": "verified"}
    return [opened, verified]


def test_an_opening_whose_op_is_not_its_operations_kind_disagrees() -> None:
    """Found from outside (AP2): a login's opening rewritten to `op` credit_transfer, sealed, gave a bundle
    that checked valid with a proof saying credit_transfer beside an operation saying login."""
    assert proof.verified_entries(_journal("login")) is not None
    with pytest.raises(JournalDisagrees, match="not the one its op and op_digest name"):
        proof.verified_entries(_journal("credit_transfer"))

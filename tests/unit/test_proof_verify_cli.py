"""`sesame proof verify` over hostile input: low-S only, and INVALID with exit 1, never a traceback."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sesame.server.cli import main
from sesame.server.domain import proof
from sesame.server.domain.proof import P256_ORDER, is_low_s, low_s
from sesame.server.evidence import ProofRejected, check_proof
from tests.support.jws import verified_claims
from tests.support.proof_world import World

HEADER = {"alg": "ES256", "kid": "sesame-proof-v1", "typ": "sesame-proof+jwt"}


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def flipped(jws: str) -> str:
    """The same proof with s replaced by n - s: a signature that still verifies (ECDSA malleability)."""
    signed, _, signature_b64 = jws.rpartition(".")
    signature = proof.b64url_decode(signature_b64)
    s = int.from_bytes(signature[32:], "big")
    return f"{signed}.{b64(signature[:32] + (P256_ORDER - s).to_bytes(32, 'big'))}"


async def a_proof() -> tuple[str, dict[str, Any]]:
    """A proof issued by the proof flows (fake key store) and the JWK set that checks it."""
    world = World()
    challenge_id = await world.started()
    return (await world.verify(challenge_id)).proof, await world.jwks()


def test_low_s_turns_a_high_s_signature_into_a_low_s_one_that_still_verifies() -> None:
    """low_s() maps (r, s) with s > n/2 to (r, n - s), which verifies under the same key."""
    key = ec.generate_private_key(ec.SECP256R1())
    data = b"signed bytes"
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    high = r.to_bytes(32, "big") + max(s, P256_ORDER - s).to_bytes(32, "big")
    assert not is_low_s(high)
    normalised = low_s(high)
    assert is_low_s(normalised)
    assert normalised == r.to_bytes(32, "big") + min(s, P256_ORDER - s).to_bytes(32, "big")
    assert low_s(normalised) == normalised
    numbers = key.public_key().public_numbers()
    public = proof.PublicKey("k", numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big"))
    jwks = {"keys": [{**proof.jwk(public)}]}
    jws = f"{b64(json.dumps({**HEADER, 'kid': 'k'}).encode())}.{b64(b'{}')}"
    signature = key.sign(jws.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(signature)
    raw = r.to_bytes(32, "big") + max(s, P256_ORDER - s).to_bytes(32, "big")
    assert check_proof(proof.compact(jws.encode(), raw), jwks).kid == "k"


async def test_every_issued_proof_is_low_s() -> None:
    """Proofs are signed low-S whatever s the key store returned (half of raw ECDSA signatures are high)."""
    for _ in range(24):
        jws, _ = await a_proof()
        assert is_low_s(proof.b64url_decode(jws.rpartition(".")[2]))


async def test_the_verifier_refuses_a_high_s_copy_of_a_valid_proof(tmp_path: Path, capsys: Any) -> None:
    """A high-S variant verifies as ECDSA, yet `sesame proof verify` reads it INVALID and exits 1."""
    jws, jwks = await a_proof()
    copy = flipped(jws)
    assert verified_claims(copy, jwks)  # a genuine signature, only malleated
    with pytest.raises(ProofRejected):
        check_proof(copy, jwks)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    assert main(["proof", "verify", jws, "--jwks", str(jwks_file)]) == 0
    capsys.readouterr()
    assert main(["proof", "verify", copy, "--jwks", str(jwks_file)]) == 1
    assert capsys.readouterr().out.startswith("INVALID: ")


@pytest.mark.parametrize(
    "wrapping", [(" ", ""), ("", "\n"), ("\t", "\r\n")], ids=["space", "newline", "both"]
)
async def test_only_the_compact_form_checks_valid_and_the_command_strips_what_is_pasted(
    wrapping: tuple[str, str], tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proof wrapped in whitespace is not the form Sésame writes: kept so in Redis it was answered as
    written, and a bundle holding it checked valid (an outside audit, AU3). `sesame proof verify` strips
    what a person pastes, as an argument or on its standard input."""
    jws, jwks = await a_proof()
    wrapped = f"{wrapping[0]}{jws}{wrapping[1]}"
    with pytest.raises(ProofRejected):
        check_proof(wrapped, jwks)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    assert main(["proof", "verify", wrapped, "--jwks", str(jwks_file)]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(wrapped))
    assert main(["proof", "verify", "-", "--jwks", str(jwks_file)]) == 0
    assert '"valid": true' in capsys.readouterr().out


def hostile_jws() -> dict[str, str]:
    """Proofs no parser should choke on, by name."""
    claims = b64(b"{}")
    signature = b64(b"\x01" * 64)
    header = b64(json.dumps(HEADER).encode())
    deep_claims = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    huge_integer = b'{"alg":' + b"9" * 20_000 + b"}"
    bad_kid = json.dumps({**HEADER, "kid": 7}).encode()
    parts = {
        "deep-header": [b64(b"[" * 100_000), claims, signature],
        "deep-claims": [header, b64(deep_claims), signature],
        "huge-integer": [b64(huge_integer), claims, signature],
        "huge-float": [b64(b"[1e999999]"), claims, signature],
        "header-a-list": [b64(b"[]"), claims, signature],
        "kid-a-number": [b64(bad_kid), claims, signature],
        "not-base64": [header, "@@@", signature],
        "not-ascii": [header, "\u00e9", signature],
        "not-utf8": [b64(b"\xff\xfe"), claims, signature],
        "two-parts": [header, claims],
        "empty": [""],
    }
    return {name: ".".join(pieces) for name, pieces in parts.items()}


@pytest.mark.parametrize("jws", hostile_jws().values(), ids=hostile_jws().keys())
async def test_a_hostile_proof_reads_invalid(jws: str, tmp_path: Path, capsys: Any) -> None:
    """Deep nesting, wrong types, huge numbers, bad base64: INVALID and exit 1, nothing raised."""
    _, jwks = await a_proof()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    assert main(["proof", "verify", jws, "--jwks", str(jwks_file)]) == 1
    assert capsys.readouterr().out.startswith("INVALID: ")


def hostile_jwks() -> dict[str, bytes]:
    """JWK set files that are not JWK sets, by name."""
    key = {"kty": "EC", "crv": "P-256", "kid": "sesame-proof-v1", "x": "A" * 43, "y": "A" * 43}
    return {
        "deep": b"[" * 100_000,
        "deep-object": b'{"keys":' * 50_000 + b"[]" + b"}" * 50_000,
        "not-json": b"keys",
        "not-utf8": b"\xff\xfe{}",
        "a-list": b"[]",
        "keys-a-string": b'{"keys": "sesame-proof-v1"}',
        "keys-of-numbers": b'{"keys": [1, 2]}',
        "no-keys": b"{}",
        "x-a-number": json.dumps({"keys": [{**key, "x": 1}]}).encode(),
        "y-a-list": json.dumps({"keys": [{**key, "y": []}]}).encode(),
        "x-missing": json.dumps({"keys": [{k: v for k, v in key.items() if k != "x"}]}).encode(),
        "x-huge": json.dumps({"keys": [{**key, "x": "A" * 5000}]}).encode(),
        "x-not-base64": json.dumps({"keys": [{**key, "x": "@" * 43}]}).encode(),
        "huge-integer": b'{"keys": [' + b"9" * 20_000 + b"]}",
        "not-on-the-curve": json.dumps({"keys": [key]}).encode(),
    }


@pytest.mark.parametrize("content", hostile_jwks().values(), ids=hostile_jwks().keys())
async def test_a_malformed_jwk_set_reads_invalid(content: bytes, tmp_path: Path, capsys: Any) -> None:
    """A --jwks file that is not a usable JWK set: INVALID and exit 1, nothing raised."""
    jws, _ = await a_proof()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_bytes(content)
    assert main(["proof", "verify", jws, "--jwks", str(jwks_file)]) == 1
    assert capsys.readouterr().out.startswith("INVALID: ")


def test_the_command_prints_invalid_for_a_deeply_nested_header(tmp_path: Path) -> None:
    """`sesame proof verify` as a process: one INVALID line on stdout, exit 1, no traceback anywhere."""
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text('{"keys": []}')
    jws = hostile_jws()["deep-header"]
    result = subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", "proof", "verify", "-", "--jwks", str(jwks_file)],
        input=jws,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout.startswith("INVALID: ")
    assert "Traceback" not in result.stderr


async def test_a_key_id_naming_two_keys_in_joined_sets_is_refused_in_either_order(
    tmp_path: Path, capsys: Any
) -> None:
    """Found from outside (AL6): `--jwks` files joined where one kid names two different keys (a token lost
    and its keys made again): the proof was valid or INVALID by the order of the files, without a word."""
    jws, jwks = await a_proof()
    [genuine] = jwks["keys"]
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    other = proof.jwk(proof.PublicKey("k", numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")))
    files = []
    for name, key in (("ours", genuine), ("other", {**other, "kid": genuine["kid"]})):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps({"keys": [key]}))
    for first, second in (files, files[::-1]):
        assert main(["proof", "verify", jws, "--jwks", str(first), "--jwks", str(second)]) == 1
        assert "names 'sesame-proof-v1' for two different keys" in capsys.readouterr().out
    assert main(["proof", "verify", jws, "--jwks", str(files[0]), "--jwks", str(files[0])]) == 0

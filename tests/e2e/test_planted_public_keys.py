"""Public keys made outside the HSM are not keys of Sésame's (decision 0153).

Found by an outside audit: `GetProofKeys` and `sesame journal keys` published every public key object on the
token under one of our labels. A session without the PIN could create one (`sesame-proof-v98`, a key pair the
attacker holds), and then a proof with forged claims, and an archive re-sealed from any block, verified. It
could also destroy the public half of a real key (not private) and put its own under the label. Now only a
public half generated in the HSM (CKA_LOCAL) is published, and the halves Sésame generates are private: a
session without the PIN does not see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.hsm.softhsm import find_softhsm_module
from tests.support.dev_token import on_dev_token
from tests.support.planted_keys import PINLESS_PAIR
from tests.support.serve_process import served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# What an attacker's script does on the token, in another process: `sys.argv[2]` the PIN, or "" for none.
# It prints how many public key objects its session sees before it plants its own under `sys.argv[3]`.
_PLANT = """
import sys
import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pkcs11 import Attribute, KeyType, ObjectClass
point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    Encoding.X962, PublicFormat.UncompressedPoint)
token = pkcs11.lib(sys.argv[1]).get_token(token_label="sesame")
with token.open(rw=True, user_pin=sys.argv[2] or None) as session:
    print(len(list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}))))
    session.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC, Attribute.TOKEN: True,
        Attribute.LABEL: sys.argv[3], Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107"),
        Attribute.EC_POINT: bytes([0x04, len(point)]) + point, Attribute.VERIFY: True,
    })
"""


def _plant(var: Path, label: str, *, with_pin: bool) -> int:
    """Plant a public key under `label` on the server's token from another process; the public key objects
    that process saw before."""
    softhsm = var / "softhsm"
    pin = (softhsm / "pin").read_text().strip() if with_pin else ""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    planted = subprocess.run(
        [sys.executable, "-c", _PLANT, find_softhsm_module(), pin, label],
        env={**env, "SOFTHSM2_CONF": str(softhsm / "softhsm2.conf")},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return int(planted.stdout)


def test_a_public_key_planted_on_the_token_is_never_published(tmp_path: Path) -> None:
    """A session without the PIN sees none of the public halves `sesame serve` generated, and the keys it
    and a session with the PIN plant under the next proof labels are not in GetProofKeys's set."""
    var = tmp_path / "var"
    with served(var, {}) as serving, grpc.insecure_channel(serving.address) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        assert _plant(var, "sesame-proof-v98", with_pin=False) == 0
        assert _plant(var, "sesame-proof-v97", with_pin=True) >= 2  # the proof's and the journal's halves
        jwks = json.loads(auth.GetProofKeys(auth_pb.GetProofKeysRequest(), timeout=10).jwks_json)
    assert [key["kid"] for key in jwks["keys"]] == ["sesame-proof-v1"]


def test_a_pinless_pair_under_the_current_proof_label_changes_nothing(tmp_path: Path) -> None:
    """Found by an outside audit (AH1): a pair a session without the PIN generated under the current proof
    label emptied GetProofKeys and read NOT_SERVING (every VERIFIED without its proof); one under the next
    label, with no proof key current, was taken up and forged proofs verified. It is not Sésame's: ignored."""
    var = tmp_path / "var"
    with served(var, {}) as serving, grpc.insecure_channel(serving.address) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        before = auth.GetProofKeys(auth_pb.GetProofKeysRequest(), timeout=10).jwks_json
        on_dev_token(var, PINLESS_PAIR, "sesame", "sesame-proof-v1")
        time.sleep(2.5)  # two health rounds
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert auth.GetProofKeys(auth_pb.GetProofKeysRequest(), timeout=10).jwks_json == before
    assert "sesame-proof-v1: a key object anyone could have made on the token" in serving.output()

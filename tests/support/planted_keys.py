"""Keys put in a token straight through python-pkcs11 under Sésame's labels, as a careless ceremony or a build
before decision 0079 would have left them: for the tests of the keys' protection (boot, rotation, serve)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pkcs11 import Attribute, KeyType

from sesame.hsm.pkcs11 import Pkcs11Config
from sesame.hsm.session import acquire_token, release_token
from sesame.hsm.worker import hsm_worker
from sesame.server.domain.model import KeyRef

# The secret key template of the builds before decision 0079: protected, but CKA_COPYABLE left true.
OLD_STYLE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.VERIFY: True,
    Attribute.MODIFIABLE: False,
}
# Ways a key's value is, or once was, known outside the token, and the reason the boot gives for each.
EXPOSED: dict[str, tuple[dict[Attribute, Any], str]] = {
    # Readable by anyone logged in (C_GetAttributeValue of CKA_VALUE): not sensitive, and extractable.
    "not-sensitive": (
        {**OLD_STYLE, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        "not sensitive",
    ),
    # Exportable wrapped under any key the PIN holder makes.
    "extractable": ({**OLD_STYLE, Attribute.EXTRACTABLE: True}, "extractable"),
}


def plant(config: Pkcs11Config, make: Callable[[Any], object]) -> None:
    """Run `make(session)` on the token through python-pkcs11: a key made outside Sésame's ceremonies."""
    worker = hsm_worker(config.module)

    def run() -> None:
        held = acquire_token(worker, config.token_label, config.pin)
        try:
            make(held.session)
        finally:
            release_token(held)

    worker.run(run)


def otp_key(config: Pkcs11Config, version: int, template: dict[Attribute, Any]) -> str:
    """Generate a 256-bit OTP key `sesame-otp-v<version>` in the token with `template`; its label."""
    label = KeyRef.otp(version).label
    plant(
        config,
        lambda session: session.generate_key(KeyType.GENERIC_SECRET, 256, label=label, template=template),
    )
    return label


# Run in another process (`python -c`): a session that never logs in generates a P-256 pair under the label
# `sys.argv[-1]` on the token labelled `sys.argv[-2]`: public objects, the private half readable and
# exportable, as SoftHSM allows without the PIN (an outside audit's way to plant keys, AH1).
PINLESS_PAIR = """
import sys
import pkcs11
from pkcs11 import Attribute, KeyType, MechanismFlag
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[-2])
with token.open(rw=True) as session:
    curve = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107")}, local=True)
    curve.generate_keypair(
        store=True, label=sys.argv[-1], capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        public_template={Attribute.PRIVATE: False},
        private_template={Attribute.PRIVATE: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
"""

# The same with an RSA pair: a public half without CKA_EC_POINT, whose reading failed GetProofKeys and health.
PINLESS_RSA_PAIR = """
import sys
import pkcs11
from pkcs11 import Attribute, KeyType, MechanismFlag
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[-2])
with token.open(rw=True) as session:
    session.generate_keypair(
        KeyType.RSA, 2048, store=True, label=sys.argv[-1],
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        public_template={Attribute.PRIVATE: False},
        private_template={Attribute.PRIVATE: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
"""

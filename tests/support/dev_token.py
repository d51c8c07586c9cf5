"""A development token (`var/softhsm`) changed from another process, as the HSM's own tools would with the
PIN (pkcs11-tool and the like): for the tests of what a running `sesame serve` makes of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sesame.hsm.softhsm import find_softhsm_module

# `pkcs11-tool --login --delete-object --type secrkey --label <label>`.
DELETE_KEY = """
import sys
import pkcs11
from pkcs11 import ObjectClass
token = pkcs11.lib(sys.argv[1]).get_token(token_label="sesame")
with token.open(rw=True, user_pin=sys.argv[2]) as session:
    session.get_key(object_class=ObjectClass.SECRET_KEY, label=sys.argv[3]).destroy()
"""


def on_dev_token(var: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the Python `script` in another process on `var`'s development token: `sys.argv[1]` is the module,
    `sys.argv[2]` the user PIN, then `args`. CalledProcessError if it fails."""
    softhsm = var / "softhsm"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    pin = (softhsm / "pin").read_text().strip()
    return subprocess.run(
        [sys.executable, "-c", script, find_softhsm_module(), pin, *args],
        env={**env, "SOFTHSM2_CONF": str(softhsm / "softhsm2.conf")},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )

"""Key ceremonies run at once on one token take turns: each makes its own version (docs/decisions/0116).

`sesame keys rotate` reads the next version from the token, then makes it. Run again while the first still
ran (or by two operators at once), both made the same label: the token held two keys `sesame-otp-v4`,
every later use of that label failed (`keys list`: `HSM call failed: MultipleObjectsReturned`), and a
server on that token could no longer boot nor start a challenge.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sesame.hsm.softhsm import find_softhsm_module

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

AT_ONCE = 8


def _env(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    return {**env, "SESAME_VAR_DIR": str(var)}


def _sesame(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", *args],
        env=_env(var),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rotations_run_at_once_each_make_their_own_version(tmp_path: Path) -> None:
    var = tmp_path / "var"
    assert _sesame(var, "keys", "init").returncode == 0
    rotations = [
        subprocess.Popen(
            [sys.executable, "-m", "sesame.server.cli", "keys", "rotate"],
            env=_env(var),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(AT_ONCE)
    ]
    made = []
    for rotation in rotations:
        out, err = rotation.communicate(timeout=120)
        assert rotation.returncode == 0, err
        made.append(re.fullmatch(r"new current OTP key: (sesame-otp-v\d+)\n", out).group(1))  # type: ignore[union-attr]

    assert sorted(made, key=lambda label: int(label.rpartition("v")[2])) == [
        f"sesame-otp-v{version}" for version in range(2, AT_ONCE + 2)
    ]
    listed = _sesame(var, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    labels = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("sesame-otp-")]
    assert labels == [f"sesame-otp-v{version}" for version in range(1, AT_ONCE + 2)]


def test_a_lock_bound_by_another_process_without_the_pin_stops_no_ceremony(tmp_path: Path) -> None:
    """Found by an outside audit: the ceremony lock's abstract socket was named after the module, the SoftHSM
    configuration and the label, which any local user knows, so anyone could bind it and every ceremony
    waited 60 s and failed. The name is keyed by the PIN now (decision 0157): a process that binds what it
    can compute (the old name, every label's) stops nothing."""
    var = tmp_path / "var"
    assert _sesame(var, "keys", "init").returncode == 0
    conf = str((var / "softhsm" / "softhsm2.conf").resolve())
    where = f"{find_softhsm_module()}\0{conf}\0sesame"
    squatted = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        squatted.bind(f"\0sesame-key-ceremony-{hashlib.sha256(where.encode()).hexdigest()[:32]}")
        started = time.monotonic()
        rotated = _sesame(var, "keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert rotated.stdout == "new current OTP key: sesame-otp-v2\n"
        assert time.monotonic() - started < 30  # not the 60 s wait for the lock
    finally:
        squatted.close()

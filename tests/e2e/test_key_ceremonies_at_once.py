"""Key ceremonies run at once on one token take turns: each makes its own version (docs/decisions/0116).

`sesame keys rotate` reads the next version from the token, then makes it. Run again while the first still
ran (or by two operators at once), both made the same label: the token held two keys `sesame-otp-v4`,
every later use of that label failed (`keys list`: `HSM call failed: MultipleObjectsReturned`), and a
server on that token could no longer boot nor start a challenge.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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

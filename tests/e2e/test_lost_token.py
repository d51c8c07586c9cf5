"""A lost token never gets new keys under used labels: `sesame serve` refuses, or starts afresh above them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.serve_process import run_serve, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def keys_listed(var: Path) -> list[str]:
    """The labels `sesame keys list` shows on the development token under `var`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    result = subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", "keys", "list"],
        env={**env, "SESAME_VAR_DIR": str(var)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line.split()[0] for line in result.stdout.splitlines()]


def served_once(var: Path) -> None:
    """Run `sesame serve` until it serves, then stop it: its Redis (under `var`) has seen its keys."""
    serving = start_serve(var)
    serving.process.terminate()
    assert serving.process.wait(timeout=30) == 0


def test_a_lost_token_is_refused_then_replaced_afresh_above_every_version_seen(tmp_path: Path) -> None:
    """Redis keeps its data, the token is lost: boot refuses; with start-afresh, new keys come above v1.

    Before, the development boot silently made sesame-otp-v1 and sesame-proof-v1 again on the new token.
    """
    var = tmp_path / "var"
    served_once(var)
    assert keys_listed(var) == ["sesame-otp-v1", "sesame-proof-v1", "sesame-journal-v1"]
    shutil.rmtree(var / "softhsm")  # the token is lost; var/redis keeps what was written under v1

    refused = run_serve(var, {})
    assert refused.returncode == 2, refused.stdout[-2000:]
    assert "lacks keys Redis holds data under" in refused.stdout
    assert "SESAME_KEYS_START_AFRESH=1" in refused.stdout
    assert keys_listed(var) == []  # the refused boot made no key under a used label

    serving = start_serve(var, settings={"SESAME_KEYS_START_AFRESH": "1"})
    serving.process.terminate()
    assert serving.process.wait(timeout=30) == 0
    assert keys_listed(var) == ["sesame-otp-v2", "sesame-proof-v2", "sesame-journal-v2"]
    served_once(var)  # the new keys are remembered: a plain boot serves again

"""The current OTP key deleted from the token while `sesame serve` runs: every worker reads NOT_SERVING within
about a second (decision 0118).

Health proved the keys by the key self-test, every 10th round (decision 0039): a worker whose self-test had
just passed went on reading SERVING for up to 10 s with every StartChallenge failing. Each round now checks
that the current keys are still there (their cached handles read), the self-test still every 10th.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sesame.hsm.softhsm import find_softhsm_module
from sesame.server.domain.model import KeyRef
from tests.support.serve_process import ServeProcess, start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Three workers: before, the chance that each one's self-test fell within 2.5 s of the deletion was 1 in 64.
WORKERS = 3

# What `pkcs11-tool --login --delete-object --type secrkey --label sesame-otp-v1` does, in another process.
_DELETE_KEY = """
import sys
import pkcs11
from pkcs11 import ObjectClass
token = pkcs11.lib(sys.argv[1]).get_token(token_label="sesame")
with token.open(rw=True, user_pin=sys.argv[2]) as session:
    session.get_key(object_class=ObjectClass.SECRET_KEY, label=sys.argv[3]).destroy()
"""


def _delete_key(var: Path, label: str) -> None:
    softhsm = var / "softhsm"
    pin = (softhsm / "pin").read_text().strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    subprocess.run(
        [sys.executable, "-c", _DELETE_KEY, find_softhsm_module(), pin, label],
        env={**env, "SOFTHSM2_CONF": str(softhsm / "softhsm2.conf")},
        check=True,
        capture_output=True,
        timeout=60,
    )


def _not_serving(serving: ServeProcess, since: int) -> set[int]:
    """The workers that logged their key store probe failing after the first `since` characters of output."""
    said = r"health NOT_SERVING: key store \(KeyNotFound\).* worker=(\d+)"
    return {int(index) for index in re.findall(said, serving.output()[since:])}


def test_every_worker_reads_not_serving_within_two_rounds_of_the_otp_key_deleted(tmp_path: Path) -> None:
    """`sesame-otp-v1` destroyed by another process (the token still answers): each worker logs
    NOT_SERVING for the key store within 2.5 s (the health round is 1 s). Before: up to 10 s."""
    serving = start_serve(tmp_path / "var", settings={"SESAME_WORKERS": str(WORKERS)})
    try:
        deadline = time.monotonic() + 120
        while len(re.findall(r"worker \d \(pid \d+\) serving", serving.output())) < WORKERS:
            assert time.monotonic() < deadline, serving.output()[-2000:]
            time.sleep(0.1)
        time.sleep(3)  # every worker's self-test passed at least once since it served, at rounds of its own
        before = len(serving.output())
        _delete_key(tmp_path / "var", KeyRef.otp(1).label)
        deleted = time.monotonic()
        assert until(lambda: _not_serving(serving, before) == set(range(1, WORKERS + 1)), 2.5), (
            f"after {time.monotonic() - deleted:.1f} s only workers {sorted(_not_serving(serving, before))} "
            "read NOT_SERVING: " + serving.output()[before:][-3000:]
        )
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=60)

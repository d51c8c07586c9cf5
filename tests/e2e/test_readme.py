"""The README's Python example, run as a new user runs it: verbatim, with the venv, against `sesame serve`."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sesame.server.grpc.demo import code_in
from tests.support.console_sms import written
from tests.support.serve_process import start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

README = Path(__file__).parents[2] / "README.md"
# The one thing the test changes: the address, since `make run`'s 50051 may be taken on this machine.
README_ADDRESS = "127.0.0.1:50051"


def readme_python() -> str:
    """The README's only ```python block."""
    text = README.read_text(encoding="utf-8")
    (block,) = re.findall(r"^```python\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)
    return block


def sms_code(sms_file: Path, example: subprocess.Popen[str], limit: float = 30.0) -> str:
    """The code of the first SMS written to the console file, waiting while the example runs."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and example.poll() is None:
        if sent := written(sms_file):
            return code_in(sent[0]["text"])
        time.sleep(0.1)
    example.kill()
    _, err = example.communicate()
    raise AssertionError(f"no SMS in {sms_file}; the example printed: {err[-2000:]}")


def test_the_readme_example_verifies_a_transfer_against_sesame_serve(tmp_path: Path) -> None:
    """Enrol, start, then the code a human would type from var/sms.jsonl: VERIFIED, with a signed proof."""
    code = readme_python()
    assert code.count(README_ADDRESS) == 1
    var = tmp_path / "var"
    serving = start_serve(var)
    try:
        example = tmp_path / "example.py"
        example.write_text(code.replace(README_ADDRESS, serving.address), encoding="utf-8")
        # sys.executable is the project's venv (.venv/bin/python under `make test`), as the README says.
        user = subprocess.Popen(
            [sys.executable, str(example)],
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = user.communicate(sms_code(var / "sms.jsonl", user) + "\n", timeout=60)
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    assert user.returncode == 0, err
    result, proof = out.rsplit(": ", 1)[1].split()
    assert result == "VERIFY_RESULT_VERIFIED"
    assert proof.count(".") == 2  # a compact JWS: header.payload.signature

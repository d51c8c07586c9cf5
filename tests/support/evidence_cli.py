"""`sesame evidence` run as an expert runs it, in a process of its own, for the evidence tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any


def run_evidence(*args: str) -> subprocess.CompletedProcess[str]:
    """`sesame evidence ARGS`, its output captured, within two minutes."""
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", "evidence", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def bundle_from(address: str, *args: str) -> dict[str, Any]:
    """The bundle `sesame evidence ARGS --target ADDRESS` prints; it must exit 0."""
    done = await asyncio.to_thread(run_evidence, *args, "--target", address)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout)
    return found

"""`sesame evidence` run as an expert runs it, in a process of its own, for the evidence tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


async def last_hour_of(address: str, user_id: str) -> dict[str, Any]:
    """The user's selection `sesame evidence --user` prints for the last hour (to five minutes ahead)."""
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    return await bundle_from(address, "--user", user_id, "--since", since, "--until", until)


async def verdict_of(bundle: dict[str, Any], jwks: Path, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    """`sesame evidence --verify` of `bundle` saved under `tmp_path`, with the keys of `jwks`: exit status,
    verdict."""
    saved = tmp_path / "bundle.json"
    saved.write_text(json.dumps(bundle), encoding="utf-8")
    done = await asyncio.to_thread(run_evidence, "--verify", str(saved), "--jwks", str(jwks))
    assert done.stdout, done.stderr[-3000:]
    verdict: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, verdict


def bank_keys(op: dict[str, Any], tmp_path: Path) -> Path:
    """The proof and journal keys, as the bank published them (here: those a bundle untouched carries),
    saved as one JWK set under `tmp_path`."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [*op["jwks"]["keys"], *op["journal_jwks"]["keys"]]}))
    return jwks

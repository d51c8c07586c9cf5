"""`sesame keys init|rotate` with SESAME_REDIS_URL check the key ledger before they make a key.

Found by an outside audit following the runbooks: `keys init` on a replacement token made the three v1 keys,
then refused them (the ledger had seen other keys under those labels) and asked for them to be removed
with the HSM's tools, where operations.md says such an init "is refused there and then"; `keys rotate` with
Redis unreachable printed `new current proof key: sesame-proof-v2`, then failed: a retry made v3 too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sesame.clients.redis_server import EmbeddedRedis
from tests.support.serve_process import free_port, sesame_on

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _keys(var: Path, *args: str, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """`sesame keys *args` on the development token under `var`, with the ledger at `redis_url` if given."""
    return sesame_on(var, "keys", *args, settings={"SESAME_REDIS_URL": redis_url} if redis_url else None)


def _labels(var: Path) -> list[str]:
    listed = _keys(var, "list")
    assert listed.returncode == 0, listed.stderr
    return sorted(line.split()[0] for line in listed.stdout.splitlines() if line.startswith("sesame-"))


def test_init_on_a_replacement_token_makes_no_key(tmp_path: Path) -> None:
    """The ledger saw the first token's v1 keys; `keys init` on a new, empty token: exit 2 naming the lost
    keys, and the new token holds no key (before: three, refused after they were made)."""
    with EmbeddedRedis(tmp_path / "redis") as redis:
        first = _keys(tmp_path / "first", "init", redis_url=redis.url)
        assert first.returncode == 0, first.stderr
        assert "recorded in the key ledger" in first.stdout
        second = tmp_path / "second"
        done = _keys(second, "init", redis_url=redis.url)
        assert (done.returncode, done.stdout) == (2, ""), done.stdout + done.stderr[-2000:]
        assert "lacks keys Redis holds data under (sesame-otp-v1 was used" in done.stderr
        assert _labels(second) == []


def test_rotate_with_redis_away_makes_no_key(tmp_path: Path) -> None:
    """`keys rotate --kind proof` with SESAME_REDIS_URL unreachable: exit 2, and the token still holds v1
    only (before: v2 made, then the failure)."""
    var = tmp_path / "var"
    assert _keys(var, "init").returncode == 0
    before = _labels(var)
    assert "sesame-proof-v1" in before
    done = _keys(var, "rotate", "--kind", "proof", redis_url=f"redis://127.0.0.1:{free_port()}")
    assert (done.returncode, done.stdout) == (2, ""), done.stdout + done.stderr[-2000:]
    assert _labels(var) == before
    # Nor a development token where there was none (an outside audit: one was made, then Redis refused).
    fresh = tmp_path / "fresh"
    done = _keys(fresh, "init", redis_url=f"redis://127.0.0.1:{free_port()}")
    assert (done.returncode, done.stdout) == (2, ""), done.stdout + done.stderr[-2000:]
    assert not (fresh / "softhsm").exists()


def test_rotate_goes_above_every_version_the_ledger_saw(tmp_path: Path) -> None:
    """The ledger saw proof v2 (rotated on a token since lost); the token restored from before it holds v1:
    `keys rotate --kind proof` makes v3, never v2 again (before: v2, refused once made)."""
    var = tmp_path / "var"
    with EmbeddedRedis(tmp_path / "redis") as redis:
        assert _keys(var, "init", redis_url=redis.url).returncode == 0
        backup = tmp_path / "softhsm-before"
        shutil.copytree(var / "softhsm", backup)
        assert _keys(var, "rotate", "--kind", "proof", redis_url=redis.url).returncode == 0
        shutil.rmtree(var / "softhsm")
        shutil.copytree(backup, var / "softhsm")
        done = _keys(var, "rotate", "--kind", "proof", redis_url=redis.url)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == "new current proof key: sesame-proof-v3"

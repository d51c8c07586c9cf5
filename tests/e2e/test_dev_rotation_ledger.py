"""`sesame keys rotate` in development keeps the key ledger of the embedded Redis (decision 0015).

Without SESAME_REDIS_URL it read and wrote no ledger: a version destroyed on the development token was made
again under its label by the next rotate, and the running server then refused that key for good (an outside
audit: StartChallenge INTERNAL until the key was deleted by hand). It now reads the ledger of the embedded
Redis under SESAME_VAR_DIR, the running server's or one started for the command, and goes above it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_server import url_of_running
from sesame.server.domain.errors import StoreUnavailable
from tests.support.dev_token import DELETE_KEY, on_dev_token
from tests.support.serve_process import served, sesame_on

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SETTINGS = {"SESAME_DISPATCHERS": "0"}


def _rotated(var: Path) -> list[str]:
    done = sesame_on(var, "keys", "rotate")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def _ledger_top(var: Path) -> str:
    client = redis.Redis.from_url(url_of_running(var / "redis"))
    try:
        return client.hget(Keyspace("sesame").key_ledger(), "otp").decode()  # type: ignore[union-attr]
    finally:
        client.close()


def test_a_rotate_without_a_redis_url_goes_above_every_version_the_embedded_ledger_saw(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    with served(var, SETTINGS):
        assert _rotated(var) == ["new current OTP key: sesame-otp-v2", "recorded in the key ledger"]
        assert _ledger_top(var) == "2"
        on_dev_token(var, DELETE_KEY, "sesame-otp-v2")  # destroyed by the HSM's tools: v2 is never made again
        assert _rotated(var) == ["new current OTP key: sesame-otp-v3", "recorded in the key ledger"]
        assert _ledger_top(var) == "3"
    # No server: a redis-server is started on the embedded directory for the command, and stopped after it.
    assert _rotated(var) == ["new current OTP key: sesame-otp-v4", "recorded in the key ledger"]
    with pytest.raises(StoreUnavailable):
        url_of_running(var / "redis")
    listed = sesame_on(var, "keys", "list")
    otp = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("sesame-otp-")]
    assert otp == ["sesame-otp-v1", "sesame-otp-v3", "sesame-otp-v4"]


def test_a_rotate_where_no_server_ever_ran_makes_no_redis(tmp_path: Path) -> None:
    """No embedded Redis under SESAME_VAR_DIR (`keys init` alone): no ledger, none made."""
    var = tmp_path / "var"
    assert sesame_on(var, "keys", "init").returncode == 0
    assert _rotated(var) == ["new current OTP key: sesame-otp-v2"]
    assert not (var / "redis").exists()

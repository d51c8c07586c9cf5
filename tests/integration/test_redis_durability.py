"""A Redis crash loses nothing acknowledged: the embedded server replays its append-only file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import ConfigurationError, StoreUnavailable
from sesame.server.domain.model import RequestContext
from sesame.server.domain.operation import CreditTransfer, Money, Payee
from tests.factories import a_challenge, a_user

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
USER = a_user(NOW)
CHALLENGE = a_challenge(
    NOW, CreditTransfer(Money("EUR", 125000), Payee("Jean DUPONT", "FR7630006000011234567890189"), "tx-1")
)


async def _write(url: str) -> None:
    store = RedisState.from_url(url)
    try:
        await store.users.register_user(USER)
        await store.challenges.open_challenge(CHALLENGE, RequestContext(ip="203.0.113.7"))
    finally:
        await store.close()


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path):
    """After SIGKILL and a restart on the same directory, the user, challenge and journal are back."""
    data = tmp_path / "redis"
    crashed = EmbeddedRedis(data, appendfsync="always")
    crashed.start()
    await _write(crashed.url)
    crashed.kill()
    with EmbeddedRedis(data) as restarted:
        store = RedisState.from_url(restarted.url)
        try:
            assert await store.users.get_user("u-1") == USER
            assert await store.challenges.get_challenge(CHALLENGE.challenge_id) == CHALLENGE
            assert len(await store.journal.challenge_journal(CHALLENGE.challenge_id)) == 1
        finally:
            await store.close()


def test_embedded_server_persists_by_append_only_file(tmp_path: Path):
    """The embedded server listens on loopback with appendonly on, fsync every second, no RDB snapshots."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            config = client.config_get("*")
        finally:
            client.close()
    assert (config["appendonly"], config["appendfsync"], config["save"]) == ("yes", "everysec", "")
    assert (config["bind"], config["protected-mode"]) == ("127.0.0.1", "yes")


def test_a_second_server_on_the_same_directory_is_refused(tmp_path: Path):
    """Starting a second embedded server on a directory a live one uses raises StoreUnavailable."""
    with EmbeddedRedis(tmp_path / "redis"), pytest.raises(StoreUnavailable):
        EmbeddedRedis(tmp_path / "redis").start()


def test_missing_executable_is_a_configuration_error(tmp_path: Path):
    """Without redis-server on the PATH, start raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        EmbeddedRedis(tmp_path / "redis", executable="no-such-redis-server").start()

"""A dead embedded redis-server comes back on the same port and directory, with its data."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import StoreUnavailable
from sesame.server.supervisor import Backoff, Supervisor
from tests.support.redis_fixtures import crash

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A private server of the test's own (the session's one stays untouched), every write fsynced."""
    with EmbeddedRedis(tmp_path / "redis", appendfsync="always") as own:
        yield own


def test_restart_keeps_the_port_and_the_data(server: EmbeddedRedis) -> None:
    """After SIGKILL, restart_if_dead starts a new child that a client on the old URL reads the data from."""
    url = server.url
    client = redis.Redis.from_url(url)
    try:
        client.set("kept", b"value")
        killed = crash(server)
        assert server.restart_if_dead() is True
        assert server.url == url
        assert int(server.pid_file.read_text()) != killed
        assert client.get("kept") == b"value"
    finally:
        client.close()


def test_restart_leaves_a_live_server_alone(server: EmbeddedRedis) -> None:
    """On a live child restart_if_dead does nothing and reports False."""
    pid = server.pid_file.read_text()
    assert server.restart_if_dead() is False
    assert server.pid_file.read_text() == pid


def test_a_stopped_server_is_not_restarted(tmp_path: Path) -> None:
    """After stop() there is nothing to supervise: restart_if_dead reports False and starts nothing."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    server.stop()
    assert server.restart_if_dead() is False
    assert not server.is_running


def test_a_failed_restart_keeps_the_port_for_the_next_try(server: EmbeddedRedis) -> None:
    """While another socket holds the port the restart fails; once it is free the next try takes it."""
    port = server.port
    crash(server)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        with pytest.raises(StoreUnavailable):
            server.restart_if_dead()
    assert server.restart_if_dead() is True
    assert server.port == port


async def test_check_fails_with_store_unavailable_when_redis_is_dead(server: EmbeddedRedis) -> None:
    """The store's health probe passes on a live server and raises StoreUnavailable once it is gone."""
    store = RedisState.from_url(server.url)
    try:
        await store.check()
        crash(server)
        with pytest.raises(StoreUnavailable):
            await store.check()
    finally:
        await store.close()


async def test_the_supervisor_restarts_a_killed_server(server: EmbeddedRedis) -> None:
    """Within a few of its intervals the supervisor brings a killed child back on the same port."""
    port = server.port
    supervisor = Supervisor("test redis", server, interval=0.02, backoff=Backoff(first=0.02, cap=0.1))
    supervisor.start()
    try:
        crash(server)
        for _ in range(250):
            if server.is_running:
                break
            await asyncio.sleep(0.02)
        assert server.is_running
        assert server.port == port
    finally:
        await supervisor.stop()

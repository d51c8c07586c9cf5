"""bench.redis_costs around a phase, on a real redis-server: the commands run and what persistence did."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from bench import aof_census
from bench.redis_costs import RedisCosts
from sesame.clients.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration


def _rewritten(client: redis.Redis) -> None:
    client.bgrewriteaof()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return
        time.sleep(0.05)
    raise AssertionError("the AOF rewrite did not end within 30 s")


def test_a_phase_names_its_aof_rewrite_and_its_fork(flushed_redis_server: EmbeddedRedis) -> None:
    """An AOF rewrite in a phase is counted with its fork; a phase without one counts none."""
    client = redis.Redis.from_url(flushed_redis_server.url)
    try:
        quiet = RedisCosts(flushed_redis_server.url)
        quiet.start()
        client.set("bench:k", "v")
        client.set("bench:k", "w")
        calm = quiet.stop(ops=2)
        assert calm["commands"]["set"]["calls_per_op"] == 1
        # Each SET as the AOF keeps it, "*3\r\n$3\r\nSET\r\n$7\r\nbench:k\r\n$1\r\nv\r\n": 33 bytes; and a
        # SELECT of 23 before the first if the AOF was rewritten since the last command (a new file selects).
        assert 33 <= calm["persistence"].pop("aof_bytes_per_op") <= (2 * 33 + 23) / 2
        assert calm["persistence"] == {
            "aof_rewrites": 0,
            "forks": 0,
            "last_fork_ms": 0.0,
            "last_rewrite_s": 0,
            "aof_delayed_fsyncs": 0,
        }
        busy = RedisCosts(flushed_redis_server.url)
        busy.start()
        _rewritten(client)
        kept = busy.stop(ops=1)["persistence"]
        assert (kept["aof_rewrites"], kept["forks"], kept["aof_bytes_per_op"]) == (1, 1, None)
        assert kept["last_fork_ms"] > 0
        assert kept["last_rewrite_s"] >= 0
    finally:
        client.close()


def test_the_aof_census_counts_what_redis_wrote(tmp_path: Path) -> None:
    """bench.aof_census reads the files the manifest names and counts each command's RESP bytes by kind.

    A Redis of its own: the session's, written by every test, may rewrite its AOF at any time."""
    with EmbeddedRedis(tmp_path) as server:
        _census_of_writes(server)


def _written(directory: Path, before: aof_census.AofCensus) -> aof_census.AofCensus:
    """The census once the three writes are in the file. With `appendfsync everysec`, Redis postpones its
    write to the AOF (up to 2 s) while a background fsync is still running on a busy disk: a census read at
    once could miss them (seen once in a full run on the loaded 2-core machine)."""
    deadline = time.monotonic() + 5.0
    while True:
        after = aof_census.census(directory)
        grown = after.commands - before.commands
        if sum(grown.values()) >= 3 or time.monotonic() >= deadline:
            return after
        time.sleep(0.05)


def _census_of_writes(server: EmbeddedRedis) -> None:
    directory = server.data_dir / "appendonlydir"
    client = redis.Redis.from_url(server.url)
    try:
        before = aof_census.census(directory)
        client.set("bench:{s:1}:k", "v")
        client.set("bench:{s:2}:k", "w")
        client.xadd("bench:{s:1}:feed", {"f": "x"}, id="5-1")
        after = _written(directory, before)
    finally:
        client.close()
    # SET as the AOF keeps it: "*3\r\n$3\r\nSET\r\n$13\r\nbench:{s:1}:k\r\n$1\r\nv\r\n", 40 bytes; both keys
    # are one kind, their tags folded.
    grown = after.sizes - before.sizes
    assert grown[("set", "bench:{}:k")] == 2 * 40
    assert after.commands[("set", "bench:{}:k")] - before.commands[("set", "bench:{}:k")] == 2
    # XADD with its id as given: *5, XADD, the key (16), 5-1, f, x.
    assert grown[("xadd", "bench:{}:feed")] == len(
        b"*5\r\n$4\r\nXADD\r\n$16\r\nbench:{s:1}:feed\r\n$3\r\n5-1\r\n$1\r\nf\r\n$1\r\nx\r\n"
    )
    assert after.total - before.total >= 2 * 40 + grown[("xadd", "bench:{}:feed")]
    assert aof_census.lines(after, 1, top=1)[0].startswith("AOF: ")

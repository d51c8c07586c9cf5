"""Health notes across a Redis outage (decision 0036), through `sesame serve` and a Redis it cannot reach.

Found from outside: Redis paused 25 s under a serving worker, the journal then held the `down` note whose
answer the worker never got (the write reached Redis when it resumed) and no `up` after it, so that a
transfer verified a minute later read `every_dependency_up: false` until the hourly note; when no note
reached Redis, the first round after the outage found everything up, as the last note said, and wrote
nothing: the outage left no trace. Both now end with the note of what the outage rounds saw, then `up`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import redis

from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_server import EmbeddedRedis
from tests.support.serve_process import start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PAUSED = 6.0  # seconds: past the state store's 2 s socket wait, several health rounds
NOTE_FIELDS = {"event", "at", "worker", "seq", "prev"}


def _notes(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(stream)]


def _all_up(note: dict[str, str]) -> bool:
    return all(value == "up" for key, value in note.items() if key not in NOTE_FIELDS)


def test_a_redis_outage_leaves_the_note_of_what_was_seen_then_up(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    serving = start_serve(tmp_path / "var", {"SESAME_REDIS_URL": own_redis.url, "SESAME_WORKERS": "1"})
    client = redis.Redis.from_url(own_redis.url)
    stream = Keyspace("sesame").health_journal()
    redis_pid = int(own_redis.pid_file.read_text().strip())
    try:
        assert until(lambda: client.xlen(stream) >= 1, 30)
        before = len(_notes(client, stream))
        assert _all_up(_notes(client, stream)[-1])
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            time.sleep(PAUSED)
        finally:
            os.kill(redis_pid, signal.SIGCONT)

        def settled() -> bool:
            after = _notes(client, stream)[before:]
            return any(not _all_up(note) for note in after) and _all_up(after[-1])

        assert until(settled, 30), _notes(client, stream)[before:]
        after = _notes(client, stream)[before:]
        down = next(note for note in after if not _all_up(note))
        assert down["state store"] == "down"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(redis_pid, signal.SIGCONT)
        client.close()
        serving.process.terminate()
        serving.process.wait(timeout=60)


def test_an_outage_across_a_restart_is_noted_by_the_next_worker(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    """Found from outside: Redis away, `sesame serve` stopped meanwhile, Redis back and the server started
    again: no `down` note at all, and an operation across it read `every_dependency_up` true. The worker
    keeps what its failed rounds saw in its var/ (`health/worker-<n>@<host>.unwritten`); the next worker of
    that number writes it first."""
    settings = {
        "SESAME_REDIS_URL": own_redis.url,
        "SESAME_WORKERS": "1",
        "SESAME_SHUTDOWN_GRACE_SECONDS": "1",
    }
    var = tmp_path / "var"
    pending = var / "health" / f"worker-1@{socket.gethostname()}.unwritten"
    client = redis.Redis.from_url(own_redis.url)
    stream = Keyspace("sesame").health_journal()
    serving = start_serve(var, settings)
    try:
        assert until(lambda: client.xlen(stream) >= 1, 30)
        before = len(_notes(client, stream))
        os.kill(int(own_redis.pid_file.read_text().strip()), signal.SIGTERM)  # Redis stops, its data kept
        assert until(pending.exists, 15)
        serving.process.terminate()
        serving.process.wait(timeout=60)
        assert own_redis.restart_if_dead()  # on its port, from its append-only file
        assert len(_notes(client, stream)) == before  # nothing was noted meanwhile
        serving = start_serve(var, settings)

        def noted() -> bool:
            after = _notes(client, stream)[before:]
            return any(not _all_up(note) for note in after) and _all_up(after[-1])

        assert until(noted, 30), _notes(client, stream)[before:]
        assert until(lambda: not pending.exists(), 10)
    finally:
        client.close()
        serving.process.terminate()
        serving.process.wait(timeout=60)

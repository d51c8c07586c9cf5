"""`sesame serve` stopped (SIGTERM) while its Redis is away: the worker drains and stops cleanly (decision
0062). Its sealer let its lease go at the stop and, Redis away, that failed: the StoreUnavailable escaped the
worker's serve, which skipped the drain of the calls in flight and exited 2 ("sesame: worker 1:
ConnectionError"), seen at the end of a Redis restart drill."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from sesame.clients.redis_server import EmbeddedRedis
from tests.support.serve_process import start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_a_worker_stopped_while_redis_is_away_drains_and_exits_cleanly(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as own:
        serving = start_serve(tmp_path / "var", settings={"SESAME_REDIS_URL": own.url})
        try:
            client = redis.Redis.from_url(own.url)
            try:
                deadline = time.monotonic() + 30
                while not client.keys("*sealer*"):  # the worker's sealer took the lease
                    assert time.monotonic() < deadline, "no sealer took the lease"
                    time.sleep(0.05)
            finally:
                client.close()
            own.stop()
            serving.process.terminate()
            serving.process.wait(timeout=60)
        finally:
            if serving.process.poll() is None:
                serving.process.kill()
                serving.process.wait()
    output = serving.output()
    assert "sealer's lease was not released (ConnectionError)" in output
    assert "draining (grace" in output
    assert "exited with status" not in output
    assert "sesame: worker 1:" not in output

"""The real `sesame serve` on a real 3-primary Redis Cluster (docs/decisions/0047): it boots only on a
cluster that says `cluster_state:ok`, and a script whose keys span slots stops it with the script's name."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.support.redis_cluster import LoopbackCluster
from tests.support.serve_process import run_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_serve_refuses_a_cluster_that_is_not_ok(tmp_path: Path) -> None:
    with LoopbackCluster(tmp_path / "cluster") as cluster:
        port = cluster.nodes[0].port
        first = redis.Redis(port=port)
        first.execute_command("CLUSTER", "DELSLOTS", 0)  # one slot no primary serves
        first.close()
        refused = run_serve(tmp_path / "var", {"SESAME_REDIS_URL": cluster.url})
    assert refused.returncode == 2
    assert f"Redis Cluster node 127.0.0.1:{port} says cluster_state:fail" in refused.stdout
    assert "HSM session open" not in refused.stdout  # checked before anything else


def test_serve_names_the_script_a_cluster_cannot_run(tmp_path: Path, redis_cluster: LoopbackCluster) -> None:
    """On the layout where every journal entry is also appended to the one journal feed, the key boot's
    record_keys reaches the feed's slot: refused by name, at once, nothing half-started."""
    refused = run_serve(tmp_path / "var", {"SESAME_REDIS_URL": redis_cluster.url})
    assert refused.returncode == 2
    assert "script record_keys touches keys in several hash slots" in refused.stdout
    assert "ERROR sesame.clients Redis Cluster: script record_keys" in refused.stdout

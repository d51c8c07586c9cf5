"""SESAME_REDIS_SHARDS through `sesame serve` (decision 0058): the count is the setting's, and a deployment
cannot change it under its data (the SMS queued in shards the new count never reads would stay there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.serve_process import run_serve, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_a_deployment_laid_out_in_four_shards_refuses_to_start_in_sixteen(tmp_path: Path) -> None:
    """The first boot with SESAME_REDIS_SHARDS=4 serves and records 4 in its Redis; a boot of the default 16
    on that Redis exits 2 naming the setting, before it serves anything."""
    var = tmp_path / "var"
    serving = start_serve(var, settings={"SESAME_REDIS_SHARDS": "4"})
    serving.process.terminate()
    assert serving.process.wait(timeout=30) == 0
    refused = run_serve(var, {})
    assert refused.returncode == 2, refused.stdout[-2000:]
    assert "Redis holds keys laid out in 4 shards; SESAME_REDIS_SHARDS is 16" in refused.stdout

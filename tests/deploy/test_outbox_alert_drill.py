"""The outbox alerts drilled live: a `sesame serve` that dispatches nothing (`SESAME_DISPATCHERS=0`) backs its
outbox up until a real Prometheus, loaded with alerts.yml, fires SesameOutboxBacklog and
SesameOutboxOldestEntryAge; a `sesame dispatch` started then sends every SMS, and both alerts resolve. The
dispatcher is a target of the same job from the start: once it runs, its own /metrics shows what it sent.

The thresholds and `for:` are LIVE_SCALE's (tests/deploy/artifacts.py), minutes being too long to wait here;
the expressions are the file's own. Before the backlog was sampled by a task of its own, a worker without
dispatch loops never sampled it: the depth read 0 while the outbox grew, and neither alert could fire.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from sesame.clients.redis_server import EmbeddedRedis
from tests.deploy.artifacts import live_alerts
from tests.deploy.live import callers, queued, replica, stopped_on_exit
from tests.support.outbox import sms_in
from tests.support.prometheus import Prometheus, running_prometheus
from tests.support.serve_process import free_port, start_dispatch

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

OUTBOX_ALERTS = {"SesameOutboxBacklog", "SesameOutboxOldestEntryAge"}
QUEUED_SMS = 6  # past the live backlog threshold (3)


def _held(prometheus: Prometheus) -> set[str]:
    return {alert["labels"]["alertname"] for alert in prometheus.alerts()} & OUTBOX_ALERTS


def test_a_stalled_outbox_fires_its_alerts_and_a_dispatcher_clears_them(tmp_path: Path) -> None:
    with ExitStack() as stack:
        redis = stack.enter_context(EmbeddedRedis(tmp_path / "redis"))
        # The test's own Redis: `sesame dispatch` cannot share the embedded one of `sesame serve`.
        settings = {"SESAME_REDIS_URL": redis.url, "SESAME_DISPATCHERS": "0"}
        stalled = stack.enter_context(stopped_on_exit(replica(tmp_path / "stalled", settings)))
        rules = live_alerts(tmp_path / "alerts.yml")
        dispatcher_metrics = f"127.0.0.1:{free_port()}"
        prometheus = stack.enter_context(
            running_prometheus(
                tmp_path / "prometheus", {"drill": [stalled.target, dispatcher_metrics]}, [rules]
            )
        )
        prometheus.wait_for("up == 1")
        assert _held(prometheus) == set()
        challenges = queued(stack.enter_context(callers(stalled, None)), QUEUED_SMS)

        assert prometheus.wait_for_firing(OUTBOX_ALERTS) >= OUTBOX_ALERTS
        firing = [alert for alert in prometheus.alerts() if alert["labels"]["alertname"] in OUTBOX_ALERTS]
        assert {(alert["labels"]["job"], alert["state"]) for alert in firing} == {("drill", "firing")}
        depth = prometheus.query('sesame_outbox_depth{job="drill"}')
        assert [float(series["value"][1]) for series in depth] == [QUEUED_SMS]  # the dispatcher is not up yet

        dispatcher = start_dispatch(stalled.var, {**settings, "SESAME_METRICS_ADDR": dispatcher_metrics})
        stack.callback(dispatcher.process.wait, 30)
        stack.callback(dispatcher.process.terminate)
        for challenge_id in challenges:
            sms_in(stalled.var / "sms.jsonl", challenge_id)
        prometheus.wait_for('max(sesame_outbox_depth{job="drill"}) == 0')
        sent = f'sesame_outbox_dispatches_total{{instance="{dispatcher_metrics}",outcome="sent"}}'
        prometheus.wait_for(f"{sent} == {QUEUED_SMS}")
        deadline = time.monotonic() + 30
        while _held(prometheus) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _held(prometheus) == set()

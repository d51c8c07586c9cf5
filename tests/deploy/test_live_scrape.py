"""A real Prometheus scrapes four running Sésame after real flows and failures: every query has data.

The dashboard's panels and the alerts' expressions are evaluated through Prometheus's HTTP query API, as
Grafana and the rule engine evaluate them; the rule engine itself, loaded with deploy/prometheus/alerts.yml,
holds every alert pending or firing. See tests/deploy/live.py for what happens on each replica.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.deploy.artifacts import alert_names, dashboard_queries
from tests.deploy.live import monitored
from tests.support.pki import Pki
from tests.support.prometheus import Prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Prometheus]:
    """Prometheus over the three replicas once the flows are done and the failures are live."""
    with monitored(tmp_path_factory.mktemp("monitored"), pki) as running:
        yield running


@pytest.fixture(scope="module")
def alert_rules(prometheus: Prometheus) -> dict[str, str]:
    """Each alert's expression as Prometheus loaded it, by name."""
    groups = prometheus.rules()
    return {rule["name"]: rule["query"] for group in groups for rule in group["rules"]}


def test_every_dashboard_query_returns_a_series(prometheus: Prometheus) -> None:
    """Each target of each panel, its Grafana variables replaced, evaluates to at least one series."""
    empty = [(query.panel, query.ref_id) for query in dashboard_queries() if not prometheus.query(query.expr)]
    assert empty == []


def test_every_alert_expression_returns_a_series(prometheus: Prometheus, alert_rules: dict[str, str]) -> None:
    """The failures made happen are what each alert's expression finds."""
    assert sorted(alert_rules) == sorted(alert_names())
    empty = [name for name, expr in alert_rules.items() if not prometheus.query(expr)]
    assert empty == []


def test_the_rule_engine_holds_every_alert(prometheus: Prometheus) -> None:
    """Prometheus's own evaluation of alerts.yml has each alert pending or firing."""
    expected = set(alert_names())
    assert prometheus.wait_for_alerts(expected) == expected


def test_alerts_name_the_failing_part(prometheus: Prometheus) -> None:
    """The HSM alert names the failing calls, the SMS alert the failing gateway, the expiry one replica."""
    alerts = {
        (alert["labels"]["alertname"], alert["labels"].get("call", "")) for alert in prometheus.alerts()
    }
    assert ("SesameHsmErrors", "mac") in alerts or ("SesameHsmErrors", "random") in alerts
    sms = [alert for alert in prometheus.alerts() if alert["labels"]["alertname"] == "SesameSmsFailureRate"]
    assert {alert["labels"]["gateway"] for alert in sms} == {"kannel"}
    expiring = [
        alert
        for alert in prometheus.alerts()
        if alert["labels"]["alertname"] == "SesameCertificateExpiresSoon"
    ]
    assert len(expiring) == 1  # the mTLS replica; the plaintext one publishes no certificate


def test_the_new_alerts_name_their_deployment(prometheus: Prometheus) -> None:
    """The outbox and the archive alerts name the stalled replica's job, the breaker alerts the failing
    replica's kannel, the sealing alert the replica whose Redis stopped and the one whose token is gone (it
    cannot sign what was journaled since); the stalled replica seals, it only does not archive; the denial
    spike the replica whose operator reports swapped SIMs, the workers' alert the replica whose worker cannot
    boot again (its Redis stopped: it does not seal either), the shedding alert the replica whose workers run
    one call at a time, the scrape alert the replica killed whole (and no other: the others answer)."""
    expected = {
        ("SesameOutboxBacklog", "stalled", ""),
        ("SesameOutboxOldestEntryAge", "stalled", ""),
        ("SesameJournalNotArchived", "stalled", ""),
        ("SesameJournalNotSealed", "main", ""),
        ("SesameJournalNotSealed", "failing", ""),
        ("SesameSmsAllBreakersOpen", "failing", ""),
        ("SesameSmsBreakerOpen", "failing", "kannel"),
        ("SesameRiskDenialSpike", "main", ""),
        ("SesameWorkersDown", "down", ""),
        ("SesameJournalNotSealed", "down", ""),
        ("SesameCallsShed", "stalled", ""),
        ("SesameScrapeFailing", "gone", ""),
    }
    names = {name for name, _, _ in expected}

    def held() -> set[tuple[str, str, str]]:
        return {
            (alert["labels"]["alertname"], alert["labels"]["job"], alert["labels"].get("provider", ""))
            for alert in prometheus.alerts()
            if alert["labels"]["alertname"] in names
        }

    # Each replica's alert, not only each name: the second replica's sealing alert may come a scrape later.
    deadline = time.monotonic() + 30
    while not expected <= (seen := held()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen == expected


def test_a_full_redis_that_answers_the_probe_is_named(prometheus: Prometheus) -> None:
    """The failing replica's Redis is full: its probe passes (health says nothing), its writes are refused,
    and SesameRedisRefusing names it; the stalled replica, whose Redis refuses nothing, is not named (decision
    0133). The main replica's Redis, stopped, is SesameRedisUnreachable's (its expression requires the probe
    up; a scrape where the probe had not failed yet may still hold it pending, so it is not asserted)."""

    def named() -> set[str]:
        return {
            alert["labels"]["job"]
            for alert in prometheus.alerts()
            if alert["labels"]["alertname"] == "SesameRedisRefusing"
        }

    deadline = time.monotonic() + 30
    while "failing" not in (seen := named()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "failing" in seen
    assert not seen & {"stalled", "down"}

"""deploy/grafana/sesame.json: a Grafana dashboard whose every query names Sésame's own metrics."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from sesame.server.metrics import Metrics, WorkersServing
from sesame.server.risk_metrics import RiskMetrics
from tests.deploy.artifacts import ALERTS, GRAFANA_VARIABLES, dashboard, dashboard_queries
from tests.support.pki import Pki

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _exported(registry: CollectorRegistry) -> set[str]:
    """The sample names a scrape of `registry` can show (counters' _total, histograms' _bucket...)."""
    names = set()
    for family in registry.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_count", "_sum", "_info"):
            names.add(family.name + suffix)
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(sesame_[a-z_]+)", expr))


def test_the_datasource_is_a_variable() -> None:
    """The first template variable picks a Prometheus data source; every panel and target uses it."""
    model = dashboard()
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["datasource"] == DATASOURCE
    for panel in model["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]


def test_panels_are_well_formed() -> None:
    """Panels have unique ids and titles, a known type, a place on the 24-column grid and targets."""
    panels = dashboard()["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    assert len({panel["title"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat"}
        grid = panel["gridPos"]
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] + grid["w"] <= 24
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)
        assert all(target["expr"] for target in panel["targets"])


def test_the_dashboard_shows_what_the_issue_lists() -> None:
    """Flows, verify results, RPC latency, SMS, HSM and Redis, blocks and budgets, build info, the outbox,
    breakers, risk decisions, the journal's sealing, the workers serving and the calls shed are shown."""
    used = set().union(*(_metric_names(query.expr) for query in dashboard_queries()))
    assert {
        "sesame_rpc_requests_total",
        "sesame_rpc_duration_seconds_bucket",
        "sesame_rpc_shed_total",
        "sesame_verifications_total",
        "sesame_sms_total",
        "sesame_sms_failures_total",
        "sesame_dependency_duration_seconds_bucket",
        "sesame_dependency_failures_total",
        "sesame_user_blocks_total",
        "sesame_send_budget_refusals_total",
        "sesame_build_info",
        "sesame_health_serving",
        "sesame_workers_serving",
        "sesame_workers",
        "sesame_tls_certificate_expiry_timestamp_seconds",
        "sesame_outbox_depth",
        "sesame_outbox_oldest_age_seconds",
        "sesame_outbox_dispatches_total",
        "sesame_sms_handed_seconds_bucket",
        "sesame_sms_parts_count",
        "sesame_sms_parts_sum",
        "sesame_sms_provider_attempts_total",
        "sesame_sms_breaker_state",
        "sesame_sms_delivery_reports_total",
        "sesame_risk_decisions_total",
        "sesame_risk_reasons_total",
        "sesame_risk_rules_total",
        "sesame_sim_swap_checks_total",
        "sesame_journal_sealed_timestamp_seconds",
        "sesame_journal_archived_timestamp_seconds",
    } <= used


def test_queries_name_only_exported_metrics(pki: Pki) -> None:
    """Every metric a panel or an alert reads is one Sésame exports (no typo reads as an empty panel)."""
    metrics = Metrics()
    metrics.tls_certificate(pki.server.cert.read_bytes())
    RiskMetrics(metrics.registry)  # registered beside the others by app.wire
    metrics.registry.register(WorkersServing(lambda: 0, 1))  # the supervisor's, beside the workers' sum
    exported = _exported(metrics.registry)
    exprs = [query.expr for query in dashboard_queries()]
    used = set().union(*(_metric_names(expr) for expr in exprs), _metric_names(ALERTS.read_text()))
    assert used <= exported, used - exported


def test_only_known_grafana_variables_are_used() -> None:
    """The queries use only the variables the live test replaces, so that it evaluates them all."""
    for query in dashboard_queries():
        assert "$" not in query.expr, query
    raw = "".join(target["expr"] for panel in dashboard()["panels"] for target in panel["targets"])
    assert set(re.findall(r"\$\w+", raw)) == set(GRAFANA_VARIABLES)

"""The operator artifacts under deploy/, read as Grafana and Prometheus read them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "sesame.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"

# What Grafana puts in place of its variables when the replica selector is "All": a rate window of a few
# scrape intervals, and the selector's allValue.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}


@dataclass(frozen=True, slots=True)
class Query:
    """One target of one panel, its Grafana variables replaced as Grafana would."""

    panel: str
    ref_id: str
    expr: str


def dashboard() -> dict[str, Any]:
    """The dashboard JSON model."""
    model: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return model


def dashboard_queries() -> list[Query]:
    """Every target of every panel, ready for Prometheus."""
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append(Query(panel["title"], target["refId"], expr))
    return queries


def alert_names() -> list[str]:
    """The alerts the rule file defines, in order."""
    return re.findall(r"^\s*- alert: (\S+)$", ALERTS.read_text(), flags=re.MULTILINE)


def runbook_urls() -> list[str]:
    """The runbook_url annotation of every alert, in order."""
    return re.findall(r"^\s*runbook_url: (\S+)$", ALERTS.read_text(), flags=re.MULTILINE)


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of `markdown` (lower case, punctuation dropped)."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}

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


# What the live tests load instead of alerts.yml's thresholds, windows and `for:`, alert by alert: minutes
# cannot be waited for there. Each text must occur in its alert's rule (every occurrence is replaced); the
# expressions are otherwise the file's own (promtool's unit tests check the real numbers).
LIVE_SCALE: dict[str, tuple[tuple[str, str], ...]] = {
    "SesameRedisRefusing": (("for: 3m", "for: 2s"),),
    "SesameWorkersDown": (("for: 5m", "for: 2s"),),
    "SesameOutboxBacklog": (("> 200", "> 3"), ("for: 5m", "for: 2s")),
    "SesameOutboxOldestEntryAge": (("> 60", "> 3"), ("for: 1m", "for: 2s")),
    "SesameSmsAllBreakersOpen": (("[1m]", "[5s]"), ("for: 1m", "for: 2s")),
    "SesameSmsBreakerOpen": (("[15m]", "[5s]"),),
    "SesameJournalNotSealed": (("> 60", "> 3"), ("for: 1m", "for: 2s")),
    "SesameJournalNotArchived": (("> 300", "> 3"), ("for: 5m", "for: 2s")),
    "SesameRiskDenialSpike": (("[30m]", "[1m]"), (">= 20", ">= 2"), ("for: 10m", "for: 2s")),
    "SesameCallsShed": (("[10m]", "[5m]"), (">= 20", ">= 2"), ("for: 5m", "for: 2s")),
    "SesameScrapeFailing": (("for: 2m", "for: 2s"),),
}


def live_alerts(path: Path) -> Path:
    """Write alerts.yml to `path` with LIVE_SCALE applied; return `path`."""
    text = ALERTS.read_text()
    starts = [match.start() for match in re.finditer(r"^\s*- alert: ", text, flags=re.MULTILINE)]
    rules = [text[start:end] for start, end in zip(starts, [*starts[1:], len(text)], strict=True)]
    scaled = text[: starts[0]]
    for rule in rules:
        name = re.findall(r"- alert: (\S+)", rule)[0]
        for old, new in LIVE_SCALE.get(name, ()):
            assert old in rule, (name, old)
            rule = rule.replace(old, new)  # noqa: PLW2901 (the rule as the live test loads it)
        scaled += rule
    path.write_text(scaled)
    return path


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

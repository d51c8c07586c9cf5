# ruff: noqa: INP001 (a script run with `python -m tools.dashboard_preview`, not a package)
"""Draw deploy/grafana/sesame.json's panels from a live Prometheus: `make dashboard-preview`.

Grafana is packaged neither in Debian 12 nor on PyPI or npm, the registries these machines reach, so no
real Grafana can render the dashboard here. This script builds the same live world as
tests/deploy/test_live_scrape.py (four `sesame serve`, real flows and failures, a private Prometheus), asks
Prometheus for every panel's queries over the run, exactly as written in the dashboard (Grafana's variables
replaced: all replicas, a 15 s rate window so that a run of a minute shows its bursts), and draws them with
matplotlib on the dashboard's own grid: time series as lines, stat panels as their last values.

Usage: .venv/bin/python -m tools.dashboard_preview docs/dashboard-preview.png
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from tests.deploy.artifacts import dashboard
from tests.deploy.live import monitored
from tests.support.pki import make_pki
from tests.support.prometheus import Prometheus

VARIABLES = {"$__rate_interval": "15s", "$instance": ".*"}
ROW_HEIGHT = 0.5  # inches per grid unit of height; a grid column is 1/24 of the figure's width


def _expr(target: dict[str, Any]) -> str:
    expr: str = target["expr"]
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def _legend(template: str, labels: dict[str, str]) -> str:
    for name, value in labels.items():
        template = template.replace("{{" + name + "}}", value or '""')
    return template


def _timeseries(ax: Axes, panel: dict[str, Any], prometheus: Prometheus, start: float, end: float) -> None:
    for target in panel["targets"]:
        for series in prometheus.query_range(_expr(target), start, end, 1):
            times = [float(t) - start for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            ax.plot(times, values, label=_legend(target["legendFormat"], series["metric"]), linewidth=1.2)
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    ax.set_ylabel(unit, fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.6)


def _stat(ax: Axes, panel: dict[str, Any], prometheus: Prometheus) -> None:
    lines = []
    for target in panel["targets"]:
        for series in prometheus.query(_expr(target)):
            value = float(series["value"][1])
            shown = (
                f"{value / 3600:.1f} h"
                if panel["fieldConfig"]["defaults"].get("unit") == "s"
                else f"{value:g}"
            )
            lines.append(f"{_legend(target['legendFormat'], series['metric'])}: {shown}")
    ax.text(0.5, 0.5, "\n".join(lines) or "no data", ha="center", va="center", fontsize=9, wrap=True)
    ax.set_axis_off()


def render(prometheus: Prometheus, start: float, output: Path) -> None:
    """Draw every panel over `start`..now on the dashboard's grid into `output` (PNG)."""
    end = time.time()
    panels = dashboard()["panels"]
    rows = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in panels)
    figure = plt.figure(figsize=(22, rows * ROW_HEIGHT + 1))
    figure.suptitle(
        "Sésame: deploy/grafana/sesame.json drawn from a live Prometheus (x: seconds into the test run)",
        fontsize=14,
    )
    grid = figure.add_gridspec(rows, 24, hspace=6, wspace=3, top=1 - 1.3 / (rows * ROW_HEIGHT + 1))
    for panel in panels:
        place = panel["gridPos"]
        ax = figure.add_subplot(
            grid[place["y"] : place["y"] + place["h"], place["x"] : place["x"] + place["w"]]
        )
        ax.set_title(panel["title"], fontsize=9, loc="left")
        if panel["type"] == "stat":
            _stat(ax, panel, prometheus)
        else:
            _timeseries(ax, panel, prometheus, start, end)
    figure.savefig(output, dpi=80)
    plt.close(figure)


def main() -> None:
    """Build the live world, let it run a little, draw the preview."""
    output = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard-preview.png")
    with tempfile.TemporaryDirectory(prefix="sesame-preview-") as directory:
        start = time.time()
        (Path(directory) / "pki").mkdir()
        pki = make_pki(Path(directory) / "pki")
        with monitored(Path(directory) / "world", pki) as prometheus:
            # A few more scrapes, so that the last moves show in the rates and the alerts settle.
            time.sleep(10)
            render(prometheus, start, output)
    print(f"wrote {output}")  # noqa: T201


if __name__ == "__main__":
    main()

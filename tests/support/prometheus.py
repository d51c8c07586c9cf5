"""A private Prometheus server (Debian's `prometheus`): own config and storage in a directory, loopback port.

It scrapes the given targets every second and evaluates the given rule files every second, so that a test
sees a flow in Prometheus within a few seconds. Queries go through the HTTP API, as Grafana's do.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.ports import free_port

SCRAPE_SECONDS = 1


@dataclass(frozen=True, slots=True)
class Prometheus:
    """A running Prometheus and the base URL of its HTTP API."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to (now, or at Unix time `at`); AssertionError if it fails."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self._get("/api/v1/query", params)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """The range vector (a matrix) `expr` evaluates to from `start` to `end`, every `step` seconds."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        result: list[dict[str, Any]] = self._get("/api/v1/query_range", params)["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts the rule engine holds now, pending or firing."""
        alerts: list[dict[str, Any]] = self._get("/api/v1/alerts", {})["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        """The rule groups Prometheus loaded, each rule with its `name` and its parsed `query`."""
        groups: list[dict[str, Any]] = self._get("/api/v1/rules", {})["groups"]
        return groups

    def wait_for_alerts(self, names: set[str], limit: float = 30.0) -> set[str]:
        """Poll the rule engine until it holds every alert of `names` (at most `limit` s); the names held."""
        deadline = time.monotonic() + limit
        while not names <= (held := {alert["labels"]["alertname"] for alert in self.alerts()}):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return held

    def wait_for_firing(self, names: set[str], limit: float = 30.0) -> set[str]:
        """Poll the rule engine until every alert of `names` is firing (at most `limit` s); those firing."""
        deadline = time.monotonic() + limit
        while not names <= (firing := self.firing()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return firing

    def firing(self) -> set[str]:
        """The names of the alerts firing now."""
        return {alert["labels"]["alertname"] for alert in self.alerts() if alert["state"] == "firing"}

    def wait_for(self, expr: str, limit: float = 30.0) -> list[dict[str, Any]]:
        """Poll `expr` until it returns a series (at most `limit` seconds); return that result."""
        deadline = time.monotonic() + limit
        while not (result := self.query(expr)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} returned nothing for {limit} s")
            time.sleep(0.2)
        return result

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 (a loopback http URL we built)
                answer = json.load(reply)
        except urllib.error.HTTPError as exc:  # a bad query is a 400 with the parser's error in the body
            raise AssertionError(f"{params}: {exc.read().decode(errors='replace')}") from exc
        assert answer["status"] == "success", answer
        return answer["data"]


def _config(targets: Sequence[str] | Mapping[str, str | Sequence[str]], rule_files: Sequence[Path]) -> str:
    """The configuration file: JSON is YAML, so no YAML library is needed to write it.

    A mapping gives each target (or targets) its own `job` label (job name to targets): one deployment each,
    as the alerts that aggregate by job expect of replicas that share nothing.
    """
    if isinstance(targets, Mapping):
        static = [
            {"targets": [each] if isinstance(each, str) else list(each), "labels": {"job": job}}
            for job, each in targets.items()
        ]
    else:
        static = [{"targets": list(targets)}]
    return json.dumps(
        {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "rule_files": [str(path.resolve()) for path in rule_files],
            "scrape_configs": [{"job_name": "sesame", "static_configs": static}],
        }
    )


@contextmanager
def running_prometheus(
    directory: Path,
    targets: Sequence[str] | Mapping[str, str | Sequence[str]],
    rule_files: Sequence[Path] = (),
) -> Iterator[Prometheus]:
    """Run Prometheus scraping `targets` (`host:port`, or job name to `host:port`) with `rule_files`, its
    files under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(_config(targets, rule_files))
    address = f"127.0.0.1:{free_port()}"
    log = directory / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={address}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(f"http://{address}", process, log)
    try:
        _wait_ready(prometheus)
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(prometheus: Prometheus, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {prometheus.log.read_text(errors='replace')[-2000:]}")
        try:
            ready = f"{prometheus.url}/-/ready"
            with urllib.request.urlopen(ready, timeout=2) as reply:  # noqa: S310 (a loopback http URL we built)
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("prometheus did not become ready")

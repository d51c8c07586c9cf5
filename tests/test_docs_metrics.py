"""The metrics tables of docs/operations.md and docs/risk.md name every metric a worker registers (and the
supervisor's own), with its labels, and nothing else; a reason a metric's help lists is one the table lists
too."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.metrics import MetricWrapperBase

from sesame.server.metrics import Metrics, WorkersServing
from sesame.server.risk_metrics import RiskMetrics

ROOT = Path(__file__).parent.parent
_ROW = re.compile(r"^\| `(sesame_[a-z_]+)` \|([^|]*)\|(.*)\|$", re.MULTILINE)
# A gauge whose workers' values are all kept gets the worker's `pid` label in the multiprocess scrape.
_PER_WORKER = ("all", "liveall")


def _documented() -> dict[str, tuple[set[str], str]]:
    """Each metric of the docs' Metrics tables: its labels and what the table says of it."""
    rows: dict[str, tuple[set[str], str]] = {}
    for doc in ("operations.md", "risk.md"):
        text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
        table = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
        for name, labels, what in _ROW.findall(table):
            rows[name] = (set(re.findall(r"`(\w+)`", labels)), what)
    return rows


def _certificate() -> bytes:
    """A self-signed PEM certificate: the TLS expiry gauge is registered only with a certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sesame")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def _registered() -> dict[str, set[str]]:
    """Every metric a TLS worker registers, as the exposition names it, with its label names."""
    metrics = Metrics()
    metrics.event_loop_metrics()
    metrics.tls_certificate(_certificate())
    RiskMetrics(metrics.registry)
    # prometheus_client keeps the collectors and their label names in private fields; no public call lists
    # the labels of a metric with no series yet.
    collectors = metrics.registry._collector_to_names
    registered = {}
    for metric in collectors:
        if not isinstance(metric, MetricWrapperBase):
            continue
        name = f"{metric._name}_total" if metric._type == "counter" else metric._name
        labels = set(metric._labelnames)
        if getattr(metric, "_multiprocess_mode", None) in _PER_WORKER:
            labels.add("pid")
        registered[name] = labels
    # The supervisor's own gauges, beside the sum of its workers' (decision 0114).
    for family in WorkersServing(lambda: 0, 1).collect():
        registered[family.name] = set()
    return registered


def test_the_tables_name_every_metric_registered_and_no_other() -> None:
    """The metric names of the tables are exactly those a worker registers."""
    assert set(_documented()) == set(_registered())


def test_the_tables_give_each_metric_its_labels() -> None:
    """Each row's labels are the metric's label names."""
    documented = _documented()
    assert {name: labels for name, (labels, _) in documented.items()} == _registered()


def test_the_reasons_the_help_lists_are_the_tables() -> None:
    """The dead letters' and the SMS failures' help list the reasons the code has (its constants), and the
    table names those very reasons."""
    documented = _documented()
    checked = []
    for family in Metrics().registry.collect():
        listed = re.search(r"by (?:gateway and )?reason \(([^)]*)\)", family.documentation)
        if listed is None:
            continue
        _, what = documented[f"{family.name}_total"]
        reasons = set(re.findall(r"`(\w+)`", what))
        assert set(listed.group(1).replace(" ", "").split(",")) == reasons, family.name
        checked.append(family.name)
    assert sorted(checked) == ["sesame_sms_dead_letters", "sesame_sms_failures"]

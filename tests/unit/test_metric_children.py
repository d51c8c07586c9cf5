"""`Metrics.child` (decision 0049): a label child looked up once, counting where `labels` counts."""

from __future__ import annotations

from sesame.server.metrics import DependencyMeter, Metrics


def test_a_child_is_looked_up_once_and_counts_where_labels_counts() -> None:
    metrics = Metrics()
    first = metrics.child(metrics.verifications, "VERIFIED")
    assert metrics.child(metrics.verifications, "VERIFIED") is first
    assert metrics.child(metrics.verifications, "WRONG_CODE") is not first
    first.inc()
    metrics.verifications.labels("VERIFIED").inc()
    assert metrics.registry.get_sample_value("sesame_verifications_total", {"result": "VERIFIED"}) == 2


def test_a_dependency_meter_observes_each_call_into_its_own_series() -> None:
    metrics = Metrics()
    meter = DependencyMeter(metrics, "store")
    for call in ("open_challenge", "open_challenge", "record_verification"):
        meter.observe(call, 0.001)
    count = "sesame_dependency_duration_seconds_count"
    assert metrics.registry.get_sample_value(count, {"dependency": "store", "call": "open_challenge"}) == 2
    assert (
        metrics.registry.get_sample_value(count, {"dependency": "store", "call": "record_verification"}) == 1
    )

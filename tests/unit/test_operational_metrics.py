"""The gauges alerts read: health as published, each probe's answer, the certificate's end, the version."""

from __future__ import annotations

from cryptography import x509
from grpc_health.v1 import health

from sesame.server.grpc.health import HealthWatcher
from sesame.server.metrics import Metrics
from tests.support.pki import Pki


class _Probe:
    """A dependency that answers, or not."""

    def __init__(self, *, answers: bool) -> None:
        self.answers = answers

    async def check(self) -> None:
        if not self.answers:
            raise ConnectionError


def _sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


async def test_health_gauges_follow_what_the_watcher_publishes() -> None:
    """A failing probe reads 0 with every service it turns NOT_SERVING; its recovery turns them back to 1."""
    metrics = Metrics()
    redis = _Probe(answers=False)
    watcher = HealthWatcher(
        health.aio.HealthServicer(),
        ("", "sesame.api.v1.AuthenticationService"),
        {"state store": redis, "key store": _Probe(answers=True)},
        interval=60,
        metrics=metrics,
    )
    await watcher.check_now()
    assert _sample(metrics, "sesame_health_probe_up", {"probe": "state store"}) == 0
    assert _sample(metrics, "sesame_health_probe_up", {"probe": "key store"}) == 1
    assert _sample(metrics, "sesame_health_serving", {"service": ""}) == 0
    assert _sample(metrics, "sesame_health_serving", {"service": "sesame.api.v1.AuthenticationService"}) == 0
    redis.answers = True
    await watcher.check_now()
    assert _sample(metrics, "sesame_health_probe_up", {"probe": "state store"}) == 1
    assert _sample(metrics, "sesame_health_serving", {"service": ""}) == 1


async def test_a_drain_reads_not_serving() -> None:
    """Once the graceful shutdown begins, every published status reads 0."""
    metrics = Metrics()
    watcher = HealthWatcher(
        health.aio.HealthServicer(), ("",), {"key store": _Probe(answers=True)}, interval=60, metrics=metrics
    )
    await watcher.check_now()
    await watcher.enter_graceful_shutdown()
    assert _sample(metrics, "sesame_health_serving", {"service": ""}) == 0


def test_no_certificate_expiry_without_tls() -> None:
    """A plaintext server publishes no expiry (a 0 would read as a certificate expired in 1970)."""
    assert _sample(Metrics(), "sesame_tls_certificate_expiry_timestamp_seconds") is None


def test_the_certificate_expiry_is_the_servers_own(pki: Pki) -> None:
    """The gauge is the notAfter of the first certificate of the chain, in Unix seconds."""
    metrics = Metrics()
    pem = pki.server.cert.read_bytes()
    metrics.tls_certificate(pem)
    expected = x509.load_pem_x509_certificate(pem).not_valid_after_utc.timestamp()
    assert _sample(metrics, "sesame_tls_certificate_expiry_timestamp_seconds") == expected


def test_build_info_names_the_version() -> None:
    """sesame_build_info is 1, labelled with the installed version."""
    metrics = Metrics()
    samples = [
        s for family in metrics.registry.collect() for s in family.samples if s.name == "sesame_build_info"
    ]
    assert len(samples) == 1
    assert samples[0].value == 1
    assert samples[0].labels["version"] not in {"", "unknown"}

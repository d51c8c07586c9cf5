"""The provider meter: attempts counted by provider and outcome, each breaker's state as a gauge."""

from __future__ import annotations

from prometheus_client import generate_latest

from sesame.clients.sms_breaker import BreakerState
from sesame.server.domain.model import DeliveryState
from sesame.server.metrics import Metrics
from sesame.server.sms_providers import ProviderMeter
from sesame.server.sms_watch import SmsWatch


def _scrape(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_every_breaker_reads_closed_from_the_start() -> None:
    """Before any send, the gauge has one series per provider, at 0."""
    metrics = Metrics()
    ProviderMeter(metrics, SmsWatch("kannel,smpp"), ("kannel", "smpp"))
    scraped = _scrape(metrics)
    assert 'sesame_sms_breaker_state{provider="kannel"} 0.0' in scraped
    assert 'sesame_sms_breaker_state{provider="smpp"} 0.0' in scraped


def test_a_breaker_change_sets_the_gauge_and_reaches_health() -> None:
    """An open breaker reads 2; with the only provider's breaker open, health is degraded."""
    metrics = Metrics()
    watch = SmsWatch("kannel", providers=("kannel",))
    meter = ProviderMeter(metrics, watch, ("kannel",))
    meter.breaker_changed("kannel", BreakerState.OPEN)
    assert 'sesame_sms_breaker_state{provider="kannel"} 2.0' in _scrape(metrics)
    assert not watch.healthy()


def test_attempts_are_counted_by_provider_and_outcome() -> None:
    """Two unreachable and one sent at kannel, one open at smpp: four series values."""
    metrics = Metrics()
    meter = ProviderMeter(metrics, SmsWatch("kannel,smpp"), ("kannel", "smpp"))
    for provider, outcome in [("kannel", "unreachable")] * 2 + [("kannel", "sent"), ("smpp", "open")]:
        meter.attempted(provider, outcome)
    scraped = _scrape(metrics)
    assert 'sesame_sms_provider_attempts_total{outcome="unreachable",provider="kannel"} 2.0' in scraped
    assert 'sesame_sms_provider_attempts_total{outcome="sent",provider="kannel"} 1.0' in scraped
    assert 'sesame_sms_provider_attempts_total{outcome="open",provider="smpp"} 1.0' in scraped


def test_delivery_reports_are_counted_by_provider_and_state() -> None:
    """Each provider reads 0 for every state it can report before any report; then each report counts."""
    metrics = Metrics()
    meter = ProviderMeter(metrics, SmsWatch("kannel,smpp"), ("kannel", "smpp"))
    reports = "sesame_sms_delivery_reports_total"
    assert f'{reports}{{provider="smpp",state="delivered"}} 0.0' in _scrape(metrics)
    meter.reported("smpp", DeliveryState.DELIVERED)
    meter.reported("smpp", DeliveryState.DELIVERED)
    meter.reported("kannel", DeliveryState.FAILED)
    scraped = _scrape(metrics)
    assert f'{reports}{{provider="smpp",state="delivered"}} 2.0' in scraped
    assert f'{reports}{{provider="kannel",state="failed"}} 1.0' in scraped
    assert f'{reports}{{provider="kannel",state="delivered"}} 0.0' in scraped

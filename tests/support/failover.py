"""The providers of the failover drills (tests/integration/test_sms_failover_live.py, the gateway alone;
tests/e2e/test_sms_drill_live.py, through StartChallenge and the outbox): real Kannel and the smpp34 SMSC,
and an observer that counts what each provider answered."""

from __future__ import annotations

from collections import Counter

from sesame.clients.smpp_pdu import Address
from sesame.clients.smpp_session import Timing
from sesame.clients.sms_breaker import BreakerSettings, BreakerState
from sesame.clients.sms_failover import Reliability
from sesame.clients.sms_kannel import KannelConfig, KannelSmsGateway
from sesame.clients.sms_policy import RetryPolicy
from sesame.clients.sms_smpp import SmppConfig, SmppSmsGateway
from tests.fakes.clock import FixedClock
from tests.support.kannel import Kannel

BATCH = 10  # sent at once, so that some are in flight when the provider stops
# Lost or timed out: the provider may have taken the message before its answer was lost.
UNKNOWN = ("lost", "timeout", "partial")


class Attempts:
    """The failover's observer: every attempt's outcome and every breaker change, per provider."""

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.breakers: list[tuple[str, BreakerState]] = []

    def attempted(self, provider: str, outcome: str) -> None:
        self.outcomes[provider, outcome] += 1

    def breaker_changed(self, provider: str, state: BreakerState) -> None:
        self.breakers.append((provider, state))

    def unknown(self, provider: str) -> int:
        return sum(self.outcomes[provider, outcome] for outcome in UNKNOWN)


def reliability() -> Reliability:
    """Quick retries and a breaker that opens after three faults for a second: a run takes seconds."""
    return Reliability(
        retry=RetryPolicy(retries=2, base_seconds=0.01, cap_seconds=0.05),
        breaker=BreakerSettings(failures=3, open_seconds=1.0),
    )


def smpp_gateway(port: int, window: int = BATCH) -> SmppSmsGateway:
    """Our SMPP provider to the SMSC on `port` (call `start()`)."""
    config = SmppConfig(
        "127.0.0.1",
        port,
        "sesame",
        "secret",
        Address(5, 0, "MaBanque"),
        window=window,
        rate=1000.0,
        timing=Timing(connect=1.0, response=1.0, keepalive=30.0),
    )
    return SmppSmsGateway(config, FixedClock())


def kannel_gateway(kannel: Kannel) -> KannelSmsGateway:
    """Our Kannel provider to a running Kannel, no delivery reports."""
    return KannelSmsGateway(
        KannelConfig(kannel.url, kannel.username, kannel.password, "MaBanque", timeout=2.0), FixedClock()
    )

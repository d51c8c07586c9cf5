"""The flows' tally counts what they do, by outcome, and labels nothing personal (docs/decisions/0026).

Durations are timed at each adapter's funnel: tests/integration/test_store_metering.py (Redis),
tests/integration/test_hsm_metering.py (HSM), tests/e2e/test_round_trips.py (every round trip of an RPC).
"""

from __future__ import annotations

import urllib.request
from datetime import timedelta

import pytest
from prometheus_client import generate_latest

from sesame.server.domain.challenges import ChallengePolicy, StartRequest, VerifyRequest
from sesame.server.domain.enrollment import EnrollmentFlows, StatusRequest
from sesame.server.domain.errors import ConfigurationError, ResendRefused, SendBudgetExhausted
from sesame.server.domain.lifecycle import Provenance
from sesame.server.domain.model import ChallengeStatus, RequestContext, User, UserStatus
from sesame.server.domain.operation import CreditTransfer, Login, Money, Payee
from sesame.server.grpc.demo import code_in
from sesame.server.metrics import (
    MeteredSmsGateway,
    Metrics,
    MetricsEndpoint,
    MetricsTally,
)
from tests.fakes.clock import FixedClock
from tests.fakes.dispatching import InstantlyDispatched
from tests.fakes.keystore import FakeKeyStore
from tests.fakes.proof_flows import proof_flows
from tests.fakes.sms import RecordingSmsGateway
from tests.fakes.state import memory_state

PHONE = "+33612345678"
TRANSFER = CreditTransfer(Money("EUR", 125000), Payee("Jean DUPONT", "FR7630006000011234567890189"), "tx-1")


class Metered:
    """Flows over fakes, telling a MetricsTally what they decide; the gateway in its metered form."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.clock = FixedClock()
        keys = FakeKeyStore()
        keys.add_key("sesame-otp-v1", b"k" * 32)
        self.store = memory_state()
        self.sms = RecordingSmsGateway(self.clock)
        self.tally = MetricsTally(self.metrics)
        self.flows = InstantlyDispatched(
            keys=keys,
            store=self.store,
            outbox=self.store.outbox,
            sms=MeteredSmsGateway(self.sms, self.metrics, "console"),
            clock=self.clock,
            policy=ChallengePolicy(),
            proofs=proof_flows(keys, self.store, self.clock),
            tally=self.tally,
        )

    async def started(self, operation: CreditTransfer | Login = TRANSFER) -> str:
        await self.store.users.register_user(
            User("alice", "acme", PHONE, "fr", UserStatus.ACTIVE, self.clock.now())
        )
        challenge = await self.flows.start(StartRequest("alice", operation, RequestContext()))
        return challenge.challenge_id

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def metered() -> Metered:
    return Metered()


async def test_verifications_are_counted_by_outcome(metered: Metered) -> None:
    """A wrong code then the right one count one wrong_code and one verified."""
    challenge_id = await metered.started()
    code = code_in(metered.sms.sent[-1].text)
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    for submitted in (wrong, code):
        await metered.flows.verify(VerifyRequest(challenge_id, submitted, TRANSFER, RequestContext()))
    assert metered.sample("sesame_verifications_total", result="wrong_code") == 1
    assert metered.sample("sesame_verifications_total", result="verified") == 1


async def test_a_block_and_the_challenges_it_voids_are_counted(metered: Metered) -> None:
    """Five wrong codes in a row count one block, and the pending challenge it voids as `user_blocked`."""
    pending = await metered.started()
    for wrong_codes in (3, 2):
        challenge_id = await metered.started()
        code = code_in(metered.sms.sent[-1].text)
        wrong = str((int(code) + 1) % 10**6).zfill(6)
        for _ in range(wrong_codes):
            await metered.flows.verify(VerifyRequest(challenge_id, wrong, TRANSFER, RequestContext()))
    assert (await metered.store.challenges.get_challenge(pending)).status is ChallengeStatus.VOIDED
    assert metered.sample("sesame_user_blocks_total") == 1
    assert metered.sample("sesame_verifications_total", result="wrong_code") == 5
    assert metered.sample("sesame_challenges_voided_total", reason="user_blocked") == 2


async def test_challenges_are_counted_by_operation_type(metered: Metered) -> None:
    """Opening a transfer and a login challenge counts each under its type."""
    await metered.started()
    await metered.started(Login())
    assert metered.sample("sesame_challenges_opened_total", operation="credit_transfer") == 1
    assert metered.sample("sesame_challenges_opened_total", operation="login") == 1


async def test_sms_are_counted_by_outcome(metered: Metered) -> None:
    """A sent and a failed SMS are counted apart, under the gateway's name."""
    await metered.started()
    metered.sms.fail()
    await metered.started()
    assert metered.sample("sesame_sms_total", gateway="console", outcome="sent") == 1
    assert metered.sample("sesame_sms_total", gateway="console", outcome="failed") == 1
    assert metered.sample("sesame_dependency_failures_total", dependency="sms", call="console") == 1


async def test_resends_are_counted_by_outcome(metered: Metered) -> None:
    """A refused resend (too soon) and an accepted one are counted apart."""
    challenge_id = await metered.started()
    with pytest.raises(ResendRefused):
        await metered.flows.resend(challenge_id, RequestContext())
    metered.clock.advance(timedelta(seconds=30))
    await metered.flows.resend(challenge_id, RequestContext())
    assert metered.sample("sesame_resends_total", outcome="too_soon") == 1
    assert metered.sample("sesame_resends_total", outcome="resent") == 1


async def test_send_budget_refusals_are_counted_by_subject(metered: Metered) -> None:
    """The eleventh start within the hour is counted as a refusal of the user's budget, not the phone's."""
    await metered.started()
    for _ in range(9):
        await metered.flows.start(StartRequest("alice", TRANSFER, RequestContext()))
    with pytest.raises(SendBudgetExhausted):
        await metered.flows.start(StartRequest("alice", TRANSFER, RequestContext()))
    assert metered.sample("sesame_send_budget_refusals_total", subject="user") == 1
    assert metered.sample("sesame_send_budget_refusals_total", subject="phone") == 0


async def test_no_personal_data_or_code_in_the_exposition(metered: Metered) -> None:
    """The whole scrape holds no phone, user, challenge id or code."""
    challenge_id = await metered.started()
    code = code_in(metered.sms.sent[-1].text)
    await metered.flows.verify(VerifyRequest(challenge_id, code, TRANSFER, RequestContext()))
    text = generate_latest(metered.metrics.registry).decode()
    for secret in (PHONE, PHONE[1:], "alice", challenge_id, challenge_id.split(".")[0], code):
        assert secret not in text


async def test_lifecycle_changes_and_voided_challenges_are_counted(metered: Metered) -> None:
    """A suspension counts one suspend change and one challenge voided for that reason."""
    challenge_id = await metered.started()
    registry = EnrollmentFlows(store=metered.store, clock=metered.clock, tally=metered.tally)
    result = await registry.suspend(StatusRequest("alice", Provenance("ops-1", "vol", "s-1")))
    assert result.voided == 1
    assert (await metered.store.challenges.get_challenge(challenge_id)).status is ChallengeStatus.VOIDED
    assert metered.sample("sesame_user_changes_total", change="suspend") == 1
    assert metered.sample("sesame_challenges_voided_total", reason="user_suspended") == 1
    # Found by an outside audit: a retried suspension (same id, or another) counted each call, and an alert
    # on a rise of suspensions fired for one back-office job retrying.
    for request_id in ("s-1", "s-2"):
        await registry.suspend(StatusRequest("alice", Provenance("ops-1", "vol", request_id)))
    assert metered.sample("sesame_user_changes_total", change="suspend") == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])  # found by an outside audit: `[::1]` refused
def test_endpoint_serves_the_registry_on_loopback(host: str) -> None:
    """The endpoint answers /metrics on a free loopback port with the service's metrics, IPv6 too."""
    metrics = Metrics()
    metrics.verifications.labels("verified").inc()
    endpoint = MetricsEndpoint(metrics.registry, f"{host}:0")
    try:
        with urllib.request.urlopen(f"http://{host}:{endpoint.port}/metrics", timeout=5) as reply:
            body = reply.read().decode()
    finally:
        endpoint.close()
    assert 'sesame_verifications_total{result="verified"} 1.0' in body


def test_endpoint_on_a_taken_port_is_a_configuration_error() -> None:
    """A port already in use stops the boot with ConfigurationError, not a traceback."""
    first = MetricsEndpoint(Metrics().registry, "127.0.0.1:0")
    try:
        with pytest.raises(ConfigurationError, match=r"\(SESAME_METRICS_ADDR\): Address already in use"):
            MetricsEndpoint(Metrics().registry, f"127.0.0.1:{first.port}")
    finally:
        first.close()

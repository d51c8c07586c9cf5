"""The risk flow over fakes: a DENY is journaled and raised, the operator's silence is a signal, a verified
code's lesson is read at the next Start (docs/risk.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sesame.server.domain.challenges import StartRequest
from sesame.server.domain.errors import RiskDenied, SimSwapUnavailable, UserNotFound
from sesame.server.domain.model import RequestContext
from sesame.server.domain.operation import AddBeneficiary, CreditTransfer, Login, Money, Operation, Payee
from sesame.server.domain.risk import RiskAssessment, RiskDecision
from sesame.server.domain.risk_flow import RiskFlows, RiskPolicy
from sesame.server.domain.risk_rules import default_rules
from sesame.server.domain.risk_signals import RiskLimits, SimSwapStatus, observation
from tests.factories import a_user
from tests.fakes.clock import FixedClock
from tests.fakes.risk_memory import MemoryRiskMemory, learn
from tests.fakes.state import memory_state

PAYEE = Payee("L J H", "FR7630006000011234567890189")
CONTEXT = RequestContext(ip="90.1.2.3", device_id="phone-1")


class Operator:
    """A SimSwapCheck that answers what the test says, or fails."""

    def __init__(self, status: SimSwapStatus | None) -> None:
        self.answer = status
        self.asked: list[str] = []

    async def status(self, phone: str) -> SimSwapStatus:
        self.asked.append(phone)
        if self.answer is None:
            raise SimSwapUnavailable("no answer in time")
        return self.answer


class Meter:
    def __init__(self) -> None:
        self.decisions: list[tuple[str, RiskDecision]] = []
        self.sims: list[str] = []

    def decided(self, operation: str, assessment: RiskAssessment) -> None:
        self.decisions.append((operation, assessment.decision))

    def sim_swap(self, state: str) -> None:
        self.sims.append(state)


@pytest.fixture(name="clock")
def _clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(name="memory")
async def _memory(clock: FixedClock) -> MemoryRiskMemory:
    store = memory_state()
    await store.users.register_user(a_user(clock.now()))
    return MemoryRiskMemory(store.users)


def flows(
    memory: MemoryRiskMemory, clock: FixedClock, operator: Operator | None = None, meter: Meter | None = None
) -> RiskFlows:
    return RiskFlows(
        memory=memory, clock=clock, policy=RiskPolicy(default_rules()), sim_swap=operator, meter=meter
    )


async def assess(
    risk: RiskFlows, user_id: str, operation: Operation, context: RequestContext
) -> RiskAssessment:
    """Start's two steps: the read, then (after the admission) the decision."""
    found = await risk.read(user_id)
    return await risk.decide(found, StartRequest(user_id, operation, context))


def taught(memory: MemoryRiskMemory, operation: AddBeneficiary | CreditTransfer, clock: FixedClock) -> None:
    """What a right code for `operation` teaches `u-1`'s memory (record_verification's lesson, faked)."""
    seen = observation("u-1", "c-1", operation, CONTEXT, clock.now())
    learn(memory.histories, seen, RiskLimits())


async def test_a_swapped_sim_denies_journals_and_counts(memory: MemoryRiskMemory, clock: FixedClock) -> None:
    """DENY: RiskDenied with the reason and version, one denial in the user's journal, counted."""
    meter = Meter()
    risk = flows(memory, clock, Operator(SimSwapStatus("swapped", clock.now() - timedelta(hours=2))), meter)
    with pytest.raises(RiskDenied) as caught:
        await assess(risk, "u-1", AddBeneficiary(PAYEE), CONTEXT)
    assert caught.value.codes == ("SIM_SWAP",)
    assert caught.value.rules_version == default_rules().version
    (entry,) = await memory.denials("u-1")
    assert (entry["reasons"], entry["rules"], entry["op"]) == (
        "SIM_SWAP",
        "recent-sim-swap",
        "add_beneficiary",
    )
    assert meter.decisions == [("add_beneficiary", RiskDecision.DENY)]
    assert meter.sims == ["swapped"]


async def test_a_silent_operator_warns(memory: MemoryRiskMemory, clock: FixedClock) -> None:
    """SimSwapUnavailable: the signal `unavailable`, WARN SIM_SWAP_UNKNOWN, never a silent ALLOW."""
    meter = Meter()
    assessment = await assess(
        flows(memory, clock, Operator(None), meter), "u-1", AddBeneficiary(PAYEE), CONTEXT
    )
    assert (assessment.decision, assessment.codes) == (
        RiskDecision.WARN,
        ("SIM_SWAP_UNKNOWN",),
    )
    assert meter.sims == ["unavailable"]


async def test_a_login_does_not_ask_the_operator(memory: MemoryRiskMemory, clock: FixedClock) -> None:
    """Only sensitive operations cost an operator call."""
    operator = Operator(SimSwapStatus("swapped"))
    assessment = await assess(flows(memory, clock, operator), "u-1", Login(), CONTEXT)
    assert assessment.decision is RiskDecision.ALLOW
    assert operator.asked == []


async def test_without_an_operator_the_signal_is_off(memory: MemoryRiskMemory, clock: FixedClock) -> None:
    """Not configured: `off`, counted, and the rules decide on the rest."""
    meter = Meter()
    assessment = await assess(flows(memory, clock, None, meter), "u-1", AddBeneficiary(PAYEE), CONTEXT)
    assert assessment.decision is RiskDecision.ALLOW
    assert meter.sims == ["off"]


async def test_an_unknown_user_is_not_found(memory: MemoryRiskMemory, clock: FixedClock) -> None:
    """The read is the user's read: UserNotFound as before."""
    with pytest.raises(UserNotFound):
        await flows(memory, clock).read("nobody")


async def test_a_verified_beneficiary_then_a_big_transfer_is_held(
    memory: MemoryRiskMemory, clock: FixedClock
) -> None:
    """What a verified code taught is read at the next Start: the payee is new, the transfer is HOLD."""
    risk = flows(memory, clock)
    taught(memory, AddBeneficiary(PAYEE), clock)
    clock.advance(timedelta(hours=20))
    assessment = await assess(risk, "u-1", CreditTransfer(Money("EUR", 592800), PAYEE, "t"), CONTEXT)
    assert assessment.decision is RiskDecision.HOLD
    assert "NEW_PAYEE" in assessment.codes

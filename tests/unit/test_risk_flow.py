"""The risk flow through Start over fakes: a DENY is refused, journaled and counted, the operator's silence is
a signal, a login costs no operator call, an unknown user is not found (docs/risk.md). The fake store's step
decides (`risk_flow.assess`, held equal to the Lua step by tests/contracts/test_risk_rules_lua.py)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.errors import ResendRefused, RiskDenied, SimSwapUnavailable, UserNotFound
from sesame.server.domain.operation import AddBeneficiary, Login, Payee
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RiskReason
from sesame.server.domain.risk_flow import RiskFlows, RiskPolicy
from sesame.server.domain.risk_rules import default_rules
from sesame.server.domain.risk_signals import SimSwapStatus
from tests.fakes.dispatching import InstantlyDispatched
from tests.fakes.proof_flows import proof_flows
from tests.fakes.risk_memory import MemoryRiskMemory
from tests.fakes.world import NO_CONTEXT, World

PAYEE = Payee("L J H", "FR7630006000011234567890189")


class Operator:
    """A SimSwapCheck that answers what the test says, or fails."""

    def __init__(self, status: SimSwapStatus | None) -> None:
        self.answer = status
        self.asked: list[str] = []

    async def status(self, phone: str, *, fresh: bool = False) -> SimSwapStatus:
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


def guarded(operator: Operator | None, meter: Meter) -> World:
    """The flows over the fakes, with the default rules, `operator` (None: not configured) and `meter`."""
    world, policy = World(), ChallengePolicy()
    world.challenges = InstantlyDispatched(
        keys=world.keys,
        store=world.store,
        outbox=world.store.outbox,
        sms=world.sms,
        clock=world.clock,
        policy=policy,
        proofs=proof_flows(world.keys, world.store, world.clock, policy.bank_name),
        risk=RiskFlows(clock=world.clock, policy=RiskPolicy(default_rules()), sim_swap=operator, meter=meter),
    )
    return world


async def test_a_swapped_sim_denies_journals_and_counts() -> None:
    """DENY: RiskDenied with the reason and version, one denial in the user's journal, counted once."""
    meter, operator = Meter(), Operator(None)
    world = guarded(operator, meter)
    operator.answer = SimSwapStatus("swapped", world.clock.now() - timedelta(hours=2))
    user_id = await world.enrol()
    with pytest.raises(RiskDenied) as caught:
        await world.start(user_id, AddBeneficiary(PAYEE))
    assert caught.value.codes == ("SIM_SWAP",)
    assert caught.value.rules_version == default_rules().version
    (entry,) = await MemoryRiskMemory(world.store.users).denials(user_id)
    assert (entry["reasons"], entry["rules"], entry["op"]) == (
        "SIM_SWAP",
        "recent-sim-swap",
        "add_beneficiary",
    )
    assert meter.decisions == [("add_beneficiary", RiskDecision.DENY)]
    assert meter.sims == ["swapped"]


async def test_a_silent_operator_warns() -> None:
    """SimSwapUnavailable: the signal `unavailable`, WARN SIM_SWAP_UNKNOWN, never a silent ALLOW."""
    meter = Meter()
    world = guarded(Operator(None), meter)
    user_id = await world.enrol()
    opened = await world.start(user_id, AddBeneficiary(PAYEE))
    assert opened.risk is not None
    assert (opened.risk.decision, opened.risk.codes) == (RiskDecision.WARN, ("SIM_SWAP_UNKNOWN",))
    assert meter.sims == ["unavailable"]


async def test_a_login_does_not_ask_the_operator() -> None:
    """Only sensitive operations cost an operator call."""
    operator = Operator(SimSwapStatus("swapped"))
    world = guarded(operator, Meter())
    user_id = await world.enrol()
    opened = await world.start(user_id, Login())
    assert opened.risk is not None
    assert opened.risk.decision is RiskDecision.ALLOW
    assert operator.asked == []


async def test_without_an_operator_the_signal_is_off() -> None:
    """Not configured: `off`, counted, and the rules decide on the rest."""
    meter = Meter()
    world = guarded(None, meter)
    user_id = await world.enrol()
    opened = await world.start(user_id, AddBeneficiary(PAYEE))
    assert opened.risk is not None
    assert opened.risk.decision is RiskDecision.ALLOW
    assert meter.sims == ["off"]


async def test_an_unknown_user_is_not_found() -> None:
    """The step reads the user with its memory: UserNotFound as before, nothing denied."""
    world = guarded(None, Meter())
    with pytest.raises(UserNotFound):
        await world.start("nobody", AddBeneficiary(PAYEE))
    assert await MemoryRiskMemory(world.store.users).denials("nobody") == []


async def test_a_resend_asks_the_operator_afresh_and_refuses_a_new_swap() -> None:
    """A new payee's code started with the SIM the user's (ALLOW), then the SIM changed: its resend is
    RiskDenied `SIM_SWAP` (decision 0152); before the change, and while the operator is silent, it goes."""
    meter, operator = Meter(), Operator(SimSwapStatus("not_swapped"))
    world = guarded(operator, meter)
    user_id = await world.enrol()
    opened = await world.start(user_id, AddBeneficiary(PAYEE))
    assert opened.risk is not None
    assert opened.risk.decision is RiskDecision.ALLOW
    risk = RiskFlows(clock=world.clock, policy=RiskPolicy(default_rules()), sim_swap=operator, meter=meter)
    await risk.check_resend(opened)  # not swapped: goes
    operator.answer = None
    await risk.check_resend(opened)  # the operator silent: goes, as before (counted `unavailable`)
    operator.answer = SimSwapStatus("swapped", world.clock.now())
    with pytest.raises(RiskDenied) as caught:
        await risk.check_resend(opened)
    assert caught.value.codes == ("SIM_SWAP",)
    assert meter.sims[-3:] == ["not_swapped", "unavailable", "swapped"]


async def test_a_resend_whose_start_weighed_the_swap_or_of_a_login_asks_nothing() -> None:
    """A login's resend never asks the operator; nor does a code whose Start's decision named `SIM_SWAP`
    (a bank's rules that only WARN on it): nothing new to weigh."""
    meter, operator = Meter(), Operator(SimSwapStatus("swapped", None))
    world = guarded(operator, meter)
    user_id = await world.enrol()
    login = await world.start(user_id, Login())
    risk = RiskFlows(clock=world.clock, policy=RiskPolicy(default_rules()), sim_swap=operator, meter=meter)
    asked = len(operator.asked)
    await risk.check_resend(login)
    weighed = RiskAssessment(RiskDecision.WARN, (RiskReason("SIM_SWAP", "changed"),), "v1")
    await risk.check_resend(dataclasses.replace(login, operation=AddBeneficiary(PAYEE), risk=weighed))
    assert len(operator.asked) == asked


async def test_a_resend_the_step_refuses_anyway_costs_no_operator_call() -> None:
    """A resend too soon after the last send asks the operator nothing (each would be a fresh, billed call a
    caller could repeat at will); past the spacing it asks, and a swap since is refused."""
    meter, operator = Meter(), Operator(SimSwapStatus("not_swapped"))
    world = guarded(operator, meter)
    user_id = await world.enrol()
    opened = await world.start(user_id, AddBeneficiary(PAYEE))
    asked = len(operator.asked)
    for _ in range(5):
        with pytest.raises(ResendRefused):
            await world.challenges.resend(opened.challenge_id, NO_CONTEXT)
    assert len(operator.asked) == asked
    world.clock.advance(opened.resend_spacing)
    operator.answer = SimSwapStatus("swapped", world.clock.now())
    with pytest.raises(RiskDenied):
        await world.challenges.resend(opened.challenge_id, NO_CONTEXT)
    assert len(operator.asked) == asked + 1

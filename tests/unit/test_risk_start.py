"""StartChallenge and VerifyChallenge with the risk rules, over fakes: admission first, a DENY sends
nothing, the assessment goes with the challenge, a verified code is remembered (docs/risk.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from sesame.server.domain.challenges import ChallengePolicy, StartRequest
from sesame.server.domain.errors import RiskDenied, UserNotActive
from sesame.server.domain.model import VerifyResult
from sesame.server.domain.operation import AddBeneficiary, CreditTransfer, Money, Payee
from sesame.server.domain.risk import RiskDecision
from sesame.server.domain.risk_flow import RiskFlows, RiskPolicy
from sesame.server.domain.risk_rules import default_rules
from sesame.server.domain.risk_signals import SimSwapStatus
from tests.fakes.dispatching import InstantlyDispatched
from tests.fakes.proof_flows import proof_flows
from tests.fakes.risk_memory import MemoryRiskMemory
from tests.fakes.world import NO_CONTEXT, World

PAYEE = Payee("L J H", "DE89370400440532013000")


class Operator:
    def __init__(self) -> None:
        self.answer = SimSwapStatus("not_swapped")

    async def status(self, phone: str, *, fresh: bool = False) -> SimSwapStatus:
        return self.answer


@dataclass
class Guarded:
    """The flows over the fakes, with the risk rules, the operator and the risk memory."""

    world: World
    operator: Operator
    memory: MemoryRiskMemory


@pytest.fixture(name="guarded")
def _guarded() -> Guarded:
    world, operator = World(), Operator()
    memory = MemoryRiskMemory(world.store.users)
    policy = ChallengePolicy()
    world.challenges = InstantlyDispatched(
        keys=world.keys,
        store=world.store,
        outbox=world.store.outbox,
        sms=world.sms,
        clock=world.clock,
        policy=policy,
        proofs=proof_flows(world.keys, world.store, world.clock, policy.bank_name),
        risk=RiskFlows(clock=world.clock, policy=RiskPolicy(default_rules()), sim_swap=operator),
    )
    return Guarded(world, operator, memory)


async def test_a_deny_opens_nothing_and_sends_nothing(guarded: Guarded) -> None:
    """The operator says swapped: RiskDenied, no SMS, no pending challenge, a denial journaled."""
    world = guarded.world
    user_id = await world.enrol()
    guarded.operator.answer = SimSwapStatus("swapped", world.clock.now() - timedelta(hours=1))
    with pytest.raises(RiskDenied):
        await world.start(user_id, AddBeneficiary(PAYEE))
    assert world.sms.sent == []
    assert (
        await world.store.challenges.pending_challenges(user_id, world.clock.now() - timedelta(days=1)) == []
    )
    assert len(await guarded.memory.denials(user_id)) == 1


async def test_the_admission_comes_before_the_rules(guarded: Guarded) -> None:
    """A suspended user is USER_STATUS, whatever the rules would say, and nothing is journaled as a denial."""
    world = guarded.world
    user_id = await world.enrol()
    await world.suspend(user_id)
    guarded.operator.answer = SimSwapStatus("swapped", world.clock.now())
    with pytest.raises(UserNotActive):
        await world.start(user_id, AddBeneficiary(PAYEE))
    assert await guarded.memory.denials(user_id) == []


async def test_a_verified_payee_makes_the_next_large_transfer_a_hold(guarded: Guarded) -> None:
    """Add a payee (ALLOW, verified), then 5,928 EUR to it the next morning: HOLD NEW_PAYEE, journaled."""
    world = guarded.world
    user_id = await world.enrol()
    added = await world.start(user_id, AddBeneficiary(PAYEE))
    assert added.risk is not None
    assert added.risk.decision is RiskDecision.ALLOW
    assert await world.verify(added, world.last_code()) is VerifyResult.VERIFIED
    world.clock.advance(timedelta(hours=20))
    transfer = CreditTransfer(Money("EUR", 592800), PAYEE, "tx-1")
    held = await world.challenges.start(StartRequest(user_id, transfer, NO_CONTEXT))
    assert held.risk is not None
    assert (held.risk.decision, held.risk.codes) == (RiskDecision.HOLD, ("NEW_PAYEE",))
    opened = (await world.store.journal.challenge_journal(held.challenge_id))[0]
    assert opened["risk_decision"] == "hold"

"""Challenge flows whose queued SMS are sent before the call returns: the unit tests' dispatcher.

In production a dispatch loop sends what Start and Resend queue, right after they answer (docs/decisions/
0025); unit tests need no loop and no waiting: these flows run the real `Dispatcher` over the fake outbox
until it is empty, after each start, resend and verification (which may queue a notice).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from sesame.server.domain.challenges import ChallengeFlows, ChallengePolicy, StartRequest, VerifyRequest
from sesame.server.domain.dispatching import Dispatcher
from sesame.server.domain.errors import HsmUnavailable, KeyNotFound, StoreUnavailable
from sesame.server.domain.model import Challenge, RequestContext, VerificationOutcome
from sesame.server.domain.ports import Clock, KeyStore, SmsGateway, State
from sesame.server.domain.proofs import ProofFlows
from sesame.server.domain.risk_flow import RiskFlows
from sesame.server.domain.tally import UNTALLIED, Tally
from tests.fakes.outbox import MemoryOutbox


class InstantlyDispatched(ChallengeFlows):
    """ChallengeFlows over the fakes, sending what they queue before they return."""

    def __init__(  # noqa: PLR0913 (as ChallengeFlows)
        self,
        *,
        keys: KeyStore,
        store: State,
        outbox: MemoryOutbox,
        sms: SmsGateway,
        clock: Clock,
        policy: ChallengePolicy,
        proofs: ProofFlows,
        tally: Tally = UNTALLIED,
        risk: RiskFlows | None = None,
    ) -> None:
        super().__init__(
            keys=keys, store=store, sms=sms, clock=clock, policy=policy, proofs=proofs, tally=tally, risk=risk
        )
        self.outbox = outbox
        self.dispatcher = Dispatcher(
            keys=keys,
            outbox=outbox,
            sms=sms,
            clock=clock,
            bank_name=policy.bank_name,
            templates=policy.sms_templates,
            units=store.send_units,
            hold_grace=policy.send_budget.hold_grace,
        )

    async def start(self, request: StartRequest) -> Challenge:
        challenge = await super().start(request)
        await self.dispatch_all()
        return challenge

    async def resend(self, challenge_id: str, context: RequestContext, request_id: str = "") -> Challenge:
        challenge = await super().resend(challenge_id, context, request_id)
        await self.dispatch_all()
        return challenge

    async def verify(self, request: VerifyRequest) -> VerificationOutcome:
        outcome = await super().verify(request)
        await self.dispatch_all()  # the notices a block or an added payee queued
        return outcome

    async def dispatch_all(self) -> None:
        """Send every SMS queued so far, in order."""
        while batch := await self.outbox.take("unit", 100, timedelta(0)):
            for queued in batch:
                # As a dispatch loop: an entry whose dispatch failed on the way stays pending.
                with contextlib.suppress(HsmUnavailable, KeyNotFound, StoreUnavailable):
                    await self.dispatcher.dispatch(queued)

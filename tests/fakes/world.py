"""The challenge and registry flows wired to the fakes, with a handle on each fake (unit tests)."""

from __future__ import annotations

from sesame.server.domain.challenges import ChallengePolicy, StartRequest, VerifyRequest
from sesame.server.domain.enrollment import EnrollmentFlows, EnrollRequest, StatusRequest
from sesame.server.domain.lifecycle import LifecyclePolicy, Provenance
from sesame.server.domain.model import Challenge, RequestContext, VerifyResult
from sesame.server.domain.operation import CreditTransfer, Money, Operation, Payee
from sesame.server.domain.tally import UNTALLIED, Tally
from sesame.server.grpc.demo import code_in
from tests.fakes.clock import FixedClock
from tests.fakes.dispatching import InstantlyDispatched
from tests.fakes.keystore import FakeKeyStore
from tests.fakes.proof_flows import proof_flows
from tests.fakes.sms import RecordingSmsGateway
from tests.fakes.state import MemoryState, memory_state

PHONE = "+33612345678"
TRANSFER = CreditTransfer(Money("EUR", 125000), Payee("Jean DUPONT", "FR7630006000011234567890189"), "tx-1")
NO_CONTEXT = RequestContext()


def by(request_id: str, actor: str = "ops-42", reason: str = "") -> Provenance:
    """Who asks for a change, under which request id."""
    return Provenance(actor=actor, reason=reason, request_id=request_id)


class World:
    """Both flow families over one set of fakes."""

    def __init__(
        self,
        store: MemoryState | None = None,
        policy: ChallengePolicy | None = None,
        lifecycle: LifecyclePolicy | None = None,
        tally: Tally = UNTALLIED,
    ) -> None:
        self.clock = FixedClock()
        self.keys = FakeKeyStore()
        self.keys.add_key("sesame-otp-v1", b"k" * 32)
        self.keys.add_proof_key(1)
        self.store = store or memory_state()
        self.sms = RecordingSmsGateway(self.clock)
        policy = policy or ChallengePolicy()
        self.challenges = InstantlyDispatched(
            keys=self.keys,
            store=self.store,
            outbox=self.store.outbox,
            sms=self.sms,
            clock=self.clock,
            policy=policy,
            proofs=proof_flows(self.keys, self.store, self.clock, policy.bank_name),
            tally=tally,
        )
        self.registry = EnrollmentFlows(
            store=self.store, clock=self.clock, policy=lifecycle or LifecyclePolicy(), tally=tally
        )

    async def enrol(self, user_id: str = "alice", client_id: str = "acme", phone: str = PHONE) -> str:
        """Enrol a user through the flow (which also lists it for its client)."""
        await self.registry.enroll(EnrollRequest(user_id, client_id, phone, "fr"))
        return user_id

    async def start(self, user_id: str = "alice", operation: Operation = TRANSFER) -> Challenge:
        """Open a challenge and send its code."""
        return await self.challenges.start(StartRequest(user_id, operation, NO_CONTEXT))

    def last_code(self) -> str:
        """The code of the last SMS sent."""
        return code_in(self.sms.sent[-1].text)

    async def verify(
        self, challenge: Challenge, code: str, operation: Operation | None = None
    ) -> VerifyResult:
        """Submit `code` for the challenge's own operation (or `operation`)."""
        request = VerifyRequest(challenge.challenge_id, code, operation or challenge.operation, NO_CONTEXT)
        return (await self.challenges.verify(request)).result

    async def suspend(self, user_id: str = "alice", request_id: str = "s-1") -> int:
        """Suspend; the number of challenges voided."""
        return (await self.registry.suspend(StatusRequest(user_id, by(request_id)))).voided

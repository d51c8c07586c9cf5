"""Challenge and proof flows wired to fakes, for the unit tests of proofs and evidence bundles."""

from __future__ import annotations

from datetime import timedelta

from sesame.server.domain.challenges import ChallengePolicy, StartRequest, VerifyRequest
from sesame.server.domain.model import RequestContext, User, UserStatus, VerificationOutcome
from sesame.server.domain.operation import CreditTransfer, Money, Payee
from sesame.server.domain.proof import jwk_set
from sesame.server.grpc.demo import code_in
from tests.fakes.clock import FixedClock
from tests.fakes.dispatching import InstantlyDispatched
from tests.fakes.keystore import FakeKeyStore
from tests.fakes.proof_flows import proof_flows
from tests.fakes.sms import RecordingSmsGateway
from tests.fakes.state import memory_state

PHONE = "+33612345678"
TRANSFER = CreditTransfer(Money("EUR", 125000), Payee("Jean DUPONT", "FR7630006000011234567890189"), "tx-1")
CONTEXT = RequestContext(ip="203.0.113.7", device_id="dev-1", session_id="sess-1", user_agent="app/1.0")
RETENTION = timedelta(hours=1)


class World:
    """Challenge and proof flows over fakes; the store purges challenges by the test's clock."""

    def __init__(self, *, proof_key: bool = True) -> None:
        self.clock = FixedClock()
        self.keys = FakeKeyStore()
        self.keys.add_key("sesame-otp-v1", b"k" * 32)
        if proof_key:
            self.keys.add_proof_key(1)
        self.store = memory_state(retention=RETENTION, purge_clock=self.clock)
        self.sms = RecordingSmsGateway(self.clock)
        self.proofs = proof_flows(self.keys, self.store, self.clock)
        self.flows = InstantlyDispatched(
            keys=self.keys,
            store=self.store,
            outbox=self.store.outbox,
            sms=self.sms,
            clock=self.clock,
            policy=ChallengePolicy(),
            proofs=self.proofs,
        )

    async def started(self) -> str:
        """A challenge for the transfer, opened for an enrolled user."""
        await self.store.users.register_user(
            User("alice", "acme", PHONE, "fr", UserStatus.ACTIVE, self.clock.now())
        )
        challenge = await self.flows.start(StartRequest("alice", TRANSFER, CONTEXT))
        return challenge.challenge_id

    async def verify(self, challenge_id: str, *, right: bool = True) -> VerificationOutcome:
        """Submit the code of the last SMS (or a wrong one) for the transfer."""
        code = code_in(self.sms.sent[-1].text)
        if not right:
            code = str((int(code) + 1) % 10**6).zfill(6)
        return await self.flows.verify(VerifyRequest(challenge_id, code, TRANSFER, CONTEXT))

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK set of the proof keys."""
        return jwk_set(await self.proofs.public_keys())

"""The fake and Redis, driven by the same random sequences of transitions, never disagree.

The contract suite checks each branch by hand; this one lets Hypothesis search for the sequences nobody
thought of (a wrong code that blocks the user while other challenges are open, a right code during the
block, a resend after a mismatch, a late delivery report after a cancel, an attempt at the expiry
instant, a second proof, a send budget taken out of time order, a reinstatement retried after a later
suspension, a challenge voided before it was opened...). Every step runs on both stores; the answers, the
errors, the stored user and challenges and the user's pending challenges must be equal, and so must the
journal's events and outcomes and the counts of repeated refusals.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from sesame.clients.redis_lane import close_lane
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.server.domain.budgets import BudgetSubject, Charge
from sesame.server.domain.errors import SesameError
from sesame.server.domain.lifecycle import (
    ByOverride,
    PhoneChange,
    Provenance,
    StatusAction,
    StatusChange,
    Unblocking,
    Voiding,
    VoidReason,
)
from sesame.server.domain.model import (
    Challenge,
    DeliveryState,
    LockoutPolicy,
    RequestContext,
    VerificationAttempt,
)
from sesame.server.domain.operation import CreditTransfer, Login, Money, Payee, digest
from sesame.server.domain.proof import IssuedProof, ProofFacts
from tests import factories
from tests.fakes.state import MemoryState, memory_state

pytestmark = pytest.mark.integration

# A day ahead of the wall clock: Redis expires keys by its own clock (a budget's at its newest unit plus the
# window), and a suite that reaches this test minutes after the import must not find them expired already.
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
CONTEXT = RequestContext(ip="192.0.2.1", session_id="s-model")
TRANSFER = CreditTransfer(Money("EUR", 4200), Payee("Jean DUPONT", "FR7630006000011234567890189"), "tx-m")
OTHER = dataclasses.replace(TRANSFER, amount=Money("EUR", 4201))
LOCKOUT = LockoutPolicy(max_failures=2, first_block=timedelta(minutes=1), longest_block=timedelta(minutes=3))

# Seconds after NOW: inside the 5-minute lifetime, at its edge, and past it.
offsets = st.sampled_from([0, 1, 29, 30, 31, 60, 120, 299, 300, 301, 600])
request_ids = st.sampled_from(["r-1", "r-2", "r-3"])
# A window shorter than the offsets' span, so that units free (Redis's own expiry of the key is a day away).
BUDGET_WINDOW = timedelta(seconds=300)
budget_limits = st.tuples(st.integers(1, 3), st.integers(1, 3))


def charged(limits: tuple[int, int]) -> tuple[Charge, ...]:
    """A unit of the user's and of the number's budget, with these limits."""
    return (
        Charge(BudgetSubject.user("u-1"), limits[0], BUDGET_WINDOW),
        Charge(BudgetSubject.phone("+33612345678"), limits[1], BUDGET_WINDOW),
    )


delivery_states = st.sampled_from(
    [DeliveryState.SENT, DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.EXPIRED]
)


def _outcome(result: Any) -> tuple[str, Any]:
    """What a call answered, in a form both stores can be compared on."""
    if isinstance(result, SesameError):
        return ("error", (type(result).__name__, getattr(result, "retry_after", None)))
    return ("ok", result)


class StoresAgree(RuleBasedStateMachine):
    """One random life of a few challenges, played on the fake and on Redis at once."""

    challenges = Bundle("challenges")

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client = aioredis.Redis.from_url(redis_url)
        self.redis = RedisState.on(self.client)
        self.memory = memory_state()
        self.opened = 0

    def teardown(self) -> None:
        self.loop.run_until_complete(close_lane(self.client))
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()

    def both(self, call: str, *args: Any, **named: Any) -> tuple[str, Any]:
        """Run one store method on each store; assert that they answer alike; return the answer."""
        answers = [self.loop.run_until_complete(self._run(store, call, args, named)) for store in self.stores]
        assert answers[0] == answers[1], (call, args, named)
        return answers[0]

    @property
    def stores(self) -> tuple[MemoryState, RedisState]:
        return self.memory, self.redis

    @staticmethod
    async def _run(
        store: MemoryState | RedisState, call: str, args: tuple[Any, ...], named: dict[str, Any]
    ) -> tuple[str, Any]:
        try:
            return _outcome(await getattr(_port(store, call), call)(*args, **named))
        except SesameError as error:
            return _outcome(error)

    @initialize()
    def clean(self) -> None:
        self.loop.run_until_complete(self.client.flushall())
        assert self.both("register_user", factories.a_user(NOW))[0] == "ok"

    @rule(action=st.sampled_from(StatusAction), request_id=request_ids, offset=offsets)
    def change_status(self, action: StatusAction, request_id: str, offset: int) -> None:
        provenance = Provenance("ops-1", "", request_id)
        change = StatusChange("u-1", action, NOW + timedelta(seconds=offset), provenance)
        self.both("change_user_status", change)

    @rule(request_id=request_ids, offset=offsets)
    def unblock(self, request_id: str, offset: int) -> None:
        provenance = Provenance("ops-1", "checked", request_id)
        self.both("unblock_user", Unblocking("u-1", NOW + timedelta(seconds=offset), provenance))

    @rule(client_id=st.sampled_from(["client-1", "client-2"]), offset=offsets)
    def revoke_for_client(self, client_id: str, offset: int) -> None:
        at = NOW + timedelta(seconds=offset)
        self.both("revoke_client_user", client_id, "u-1", at, Provenance("ops-1", "", "t-1"))

    @rule(phone=st.sampled_from(["+33698765432", "+33611111111"]), request_id=request_ids, offset=offsets)
    def change_phone(self, phone: str, request_id: str, offset: int) -> None:
        at = NOW + timedelta(seconds=offset)
        change = PhoneChange(
            "u-1",
            phone,
            at,
            at + timedelta(hours=72),
            ByOverride("agent"),
            Provenance("ops-1", "", request_id),
            CONTEXT,
        )
        self.both("change_secure_phone", change)

    @rule(
        target=challenges,
        max_attempts=st.integers(1, 3),
        max_resends=st.integers(0, 2),
        spacing=st.sampled_from([0, 30]),
        transfer=st.booleans(),
        opened=st.booleans(),
        limits=budget_limits,
    )
    def open(  # noqa: PLR0913 (one argument per drawn value)
        self,
        *,
        max_attempts: int,
        max_resends: int,
        spacing: int,
        transfer: bool,
        opened: bool,
        limits: tuple[int, int],
    ) -> Challenge:
        """Open (usually): an id never opened is what a voiding may still be handed."""
        self.opened += 1
        challenge = factories.a_challenge(
            NOW,
            TRANSFER if transfer else Login(),
            nonce=self.opened.to_bytes(16, "big"),
            max_attempts=max_attempts,
            max_resends=max_resends,
            resend_spacing=timedelta(seconds=spacing),
        )
        if opened:
            self.both("open_challenge", challenge, CONTEXT, charged(limits))
        return challenge

    @rule(
        challenge=challenges, offset=offsets, before=st.sampled_from([None, (0, 0), (1, 0), (0, 1), (2, 1)])
    )
    def void(self, challenge: Challenge, offset: int, before: tuple[int, int] | None) -> None:
        """Whatever is open, or what opened before a change that left the user at `before` (its counts)."""
        at = NOW + timedelta(seconds=offset)
        voiding = Voiding("u-1", VoidReason.USER_SUSPENDED, at, Provenance("o", "", "v"), before)
        self.both("void_challenge", challenge.challenge_id, voiding)

    @rule(challenge=challenges, matches=st.booleans(), same_operation=st.booleans(), offset=offsets)
    def verify(self, *, challenge: Challenge, matches: bool, same_operation: bool, offset: int) -> None:
        operation = challenge.operation if same_operation else OTHER
        attempt = VerificationAttempt(
            challenge.challenge_id,
            digest(operation),
            matches,
            NOW + timedelta(seconds=offset),
            CONTEXT,
        )
        self.both("record_verification", attempt, LOCKOUT)

    @rule(challenge=challenges, offset=offsets)
    def cancel(self, challenge: Challenge, offset: int) -> None:
        self.both("cancel_challenge", challenge.challenge_id, NOW + timedelta(seconds=offset), CONTEXT)

    @rule(challenge=challenges, offset=offsets, limits=budget_limits)
    def resend(self, challenge: Challenge, offset: int, limits: tuple[int, int]) -> None:
        at = NOW + timedelta(seconds=offset)
        self.both("record_resend", challenge.challenge_id, at, CONTEXT, charged(limits))

    @rule(challenge=challenges, state=delivery_states, ref=st.sampled_from(["m1", "m2"]), offset=offsets)
    def deliver(self, challenge: Challenge, state: DeliveryState, ref: str, offset: int) -> None:
        self.both("record_delivery", challenge.challenge_id, state, ref, NOW + timedelta(seconds=offset))

    @rule(challenge=challenges, jti=st.sampled_from(["j1", "j2"]), offset=offsets, journaled=st.booleans())
    def prove(self, challenge: Challenge, jti: str, offset: int, journaled: bool) -> None:  # noqa: FBT001 (a rule)
        facts = ProofFacts(
            challenge.challenge_id, "u-1", "client-1", "login", challenge.op_digest.hex(), 1, 1, NOW, CONTEXT
        )
        proof = IssuedProof(f"h.c.{jti}", jti, "sesame-proof-v1", facts)
        self.both("record_proof", proof, NOW + timedelta(seconds=offset), journaled=journaled)

    @invariant()
    def same_user_and_journal(self) -> None:
        self.both("get_user", "u-1")
        self.both("pending_challenges", "u-1", NOW)
        journals = [self.loop.run_until_complete(store.users.user_journal("u-1")) for store in self.stores]
        summaries = [
            [
                (e["event"], e.get("outcome"), e.get("failures"), e.get("status"), e.get("blocked_until"))
                for e in journal
            ]
            for journal in journals
        ]
        assert summaries[0] == summaries[1]

    @invariant()
    def same_challenges_and_journals(self) -> None:
        for number in range(1, self.opened + 1):
            challenge_id = factories.challenge_id(number.to_bytes(16, "big"))
            self.both("get_challenge", challenge_id)
            journals = [
                self.loop.run_until_complete(store.journal.challenge_journal(challenge_id))
                for store in self.stores
            ]
            summaries = [
                [(e["event"], e["outcome"], e.get("attempts")) for e in journal] for journal in journals
            ]
            assert summaries[0] == summaries[1], challenge_id
            self.both("challenge_refusals", challenge_id)


def test_fake_and_redis_agree_on_every_sequence(redis_server: EmbeddedRedis) -> None:
    """Sixty random sequences of up to 25 transitions give the same answers, states and journals on both."""
    run_state_machine_as_test(
        lambda: StoresAgree(redis_server.url),
        settings=settings(
            max_examples=60,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        ),
    )


def _port(store: MemoryState | RedisState, call: str) -> object:
    """The aggregate's port that has the operation `call`."""
    ports = (store.users, store.clients, store.challenges, store.proofs, store.journal)
    return next(port for port in ports if hasattr(port, call))

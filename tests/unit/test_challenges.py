"""The challenge flows over fakes: what is sent, what is checked, in which order."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from dataclasses import replace
from datetime import timedelta

import pytest

from sesame.server.domain import codes
from sesame.server.domain.challenges import (
    ChallengeFlows,
    ChallengePolicy,
    ChallengeRef,
    StartRequest,
    VerifyRequest,
)
from sesame.server.domain.errors import (
    ChallengeClosed,
    InvalidRequest,
    KeyNotFound,
    KeyVersionUnavailable,
    PhoneUnchanged,
    ResendRefused,
    StoreUnavailable,
    UserBlocked,
    UserNotActive,
    UserNotFound,
)
from sesame.server.domain.lifecycle import Voiding, VoidOutcome
from sesame.server.domain.model import (
    ChallengeStatus,
    DeliveryState,
    LockoutPolicy,
    RequestContext,
    User,
    UserStatus,
    VerifyResult,
)
from sesame.server.domain.operation import ChangePhone, CreditTransfer, Login, Money, Operation, Payee, digest
from sesame.server.domain.tally import UNTALLIED, Tally, Untallied
from sesame.server.grpc.demo import code_in
from tests.fakes.challenges import MemoryChallenges
from tests.fakes.clock import FixedClock
from tests.fakes.dispatching import InstantlyDispatched
from tests.fakes.keystore import FakeKeyStore
from tests.fakes.proof_flows import proof_flows
from tests.fakes.sms import RecordingSmsGateway
from tests.fakes.state import MemoryState, memory_state
from tests.support.given_up import given_up, held

PHONE = "+33612345678"
TRANSFER = CreditTransfer(Money("EUR", 125000), Payee("Jean DUPONT", "FR7630006000011234567890189"), "tx-1")
NO_CONTEXT = RequestContext()
SPACING = ChallengePolicy().resend_spacing


class World:
    """Flows wired to fakes, with handles on each fake."""

    def __init__(self, policy: ChallengePolicy | None = None, tally: Tally = UNTALLIED) -> None:
        self.clock = FixedClock()
        self.keys = FakeKeyStore()
        self.keys.add_key("sesame-otp-v1", b"k" * 32)
        self.store = memory_state()
        self.sms = RecordingSmsGateway(self.clock)
        self.flows = flows_over(
            self.keys, self.store, self.sms, self.clock, policy or ChallengePolicy(), tally=tally
        )

    async def enrol(self, status: UserStatus = UserStatus.ACTIVE) -> str:
        user = User("alice", "acme", PHONE, "fr", status, self.clock.now())
        await self.store.users.register_user(user)
        return user.user_id

    def last_code(self) -> str:
        return code_in(self.sms.sent[-1].text)

    async def verify(
        self, challenge_id: str, code: str, operation: CreditTransfer | Login = TRANSFER
    ) -> VerifyResult:
        outcome = await self.flows.verify(VerifyRequest(challenge_id, code, operation, NO_CONTEXT))
        return outcome.result


def flows_over(  # noqa: PLR0913 (the fakes, then the policy and the tally)
    keys: FakeKeyStore,
    store: MemoryState,
    sms: RecordingSmsGateway,
    clock: FixedClock,
    policy: ChallengePolicy,
    *,
    tally: Tally = UNTALLIED,
) -> ChallengeFlows:
    """The challenge flows over fakes, their proofs over the same fakes, their outcomes told to `tally`."""
    proofs = proof_flows(keys, store, clock, policy.bank_name)
    return InstantlyDispatched(
        keys=keys,
        store=store,
        outbox=store.outbox,
        sms=sms,
        clock=clock,
        policy=policy,
        proofs=proofs,
        tally=tally,
    )


@pytest.fixture
async def world() -> World:
    return World()


def wrong(code: str) -> str:
    """A code of the same length that is certainly not `code`."""
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


async def test_start_sends_the_code_to_the_secure_phone(world: World) -> None:
    """The SMS goes to the enrolled number and its code verifies the operation."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    assert world.sms.sent[-1].to == PHONE
    assert world.sms.sent[-1].challenge_id == challenge.challenge_id
    assert challenge.delivery is DeliveryState.QUEUED
    assert (await world.store.challenges.get_challenge(challenge.challenge_id)).delivery is DeliveryState.SENT
    assert await world.verify(challenge.challenge_id, world.last_code()) is VerifyResult.VERIFIED


async def test_a_change_to_the_secure_number_itself_sends_no_code(world: World) -> None:
    """A change_phone to the number the user has is PhoneUnchanged, as ChangeSecurePhone would answer: no
    SMS, and a transfer still opens."""
    user_id = await world.enrol()
    with pytest.raises(PhoneUnchanged):
        await world.flows.start(StartRequest(user_id, ChangePhone(PHONE), NO_CONTEXT))
    assert world.sms.sent == []
    assert (await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))).phone == PHONE


async def test_challenge_id_names_nonce_key_and_digits(world: World) -> None:
    """The id carries a 128-bit nonce, the key version and the code length."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    ref = ChallengeRef.parse(challenge.challenge_id)
    assert len(ref.nonce) == 16
    assert (ref.key_version, ref.digits) == (1, 6)
    assert ref.nonce == challenge.nonce


async def test_code_is_bound_to_the_operation(world: World) -> None:
    """Another amount gives another code for the same nonce and key."""
    nonce = b"n" * 16
    changed = replace(TRANSFER, amount=Money("EUR", 125001))
    a = await codes.derive(world.keys, key_version=1, digits=6, nonce=nonce, op_digest=digest(TRANSFER))
    b = await codes.derive(world.keys, key_version=1, digits=6, nonce=nonce, op_digest=digest(changed))
    assert a != b


async def test_unknown_user_is_refused_before_anything_is_sent(world: World) -> None:
    """No SMS for a user who is not enrolled."""
    with pytest.raises(UserNotFound):
        await world.flows.start(StartRequest("nobody", TRANSFER, NO_CONTEXT))
    assert world.sms.sent == []


async def test_suspended_user_gets_no_code(world: World) -> None:
    """A suspended user (lost phone) cannot be sent a code."""
    with pytest.raises(UserNotActive):
        await world.flows.start(StartRequest(await world.enrol(UserStatus.SUSPENDED), TRANSFER, NO_CONTEXT))
    assert world.sms.sent == []


async def test_without_an_otp_key_start_fails_loudly() -> None:
    """An HSM with no sesame-otp key is a KeyNotFound, not a silent default."""
    world = World()
    world.keys = FakeKeyStore()
    world.flows = flows_over(world.keys, world.store, world.sms, world.clock, ChallengePolicy())
    with pytest.raises(KeyNotFound):
        await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))


async def test_expired_challenge_refuses_the_right_code(world: World) -> None:
    """After the lifetime, even the right code is EXPIRED."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    world.clock.advance(timedelta(minutes=5))
    assert await world.verify(challenge.challenge_id, world.last_code()) is VerifyResult.EXPIRED


async def test_code_of_the_wrong_length_is_invalid_and_not_counted(world: World) -> None:
    """A 5-digit code for a 6-digit challenge is bad input and spends no attempt."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    with pytest.raises(InvalidRequest) as caught:
        await world.verify(challenge.challenge_id, "12345")
    assert caught.value.violations[0].field == "code"
    assert (await world.store.challenges.get_challenge(challenge.challenge_id)).attempts == 0


async def test_unknown_key_version_is_a_missing_key_not_an_unknown_challenge(world: World) -> None:
    """A challenge opened under a key version this key store lacks is KeyVersionUnavailable, not NotFound."""
    user_id = await world.enrol()
    world.keys.add_key("sesame-otp-v2", b"z" * 32)  # a peer replica's newer key
    opened = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
    lacking = FakeKeyStore()
    lacking.add_key("sesame-otp-v1", b"k" * 32)
    replica = flows_over(lacking, world.store, world.sms, world.clock, ChallengePolicy())
    with pytest.raises(KeyVersionUnavailable) as caught:
        await replica.verify(VerifyRequest(opened.challenge_id, world.last_code(), TRANSFER, NO_CONTEXT))
    assert caught.value.key_version == 2
    assert (await world.store.challenges.get_challenge(opened.challenge_id)).attempts == 0


async def test_malformed_challenge_id_is_invalid(world: World) -> None:
    """Ids that are not ours are bad input."""
    with pytest.raises(InvalidRequest):
        await world.flows.get("not-an-id")


async def test_rotation_keeps_challenges_in_flight(world: World) -> None:
    """A challenge opened under v1 still verifies after v2 becomes current; new ones use v2."""
    user_id = await world.enrol()
    old = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
    old_code = world.last_code()
    world.keys.add_key("sesame-otp-v2", b"z" * 32)
    new = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
    assert new.key_version == 2
    assert await world.verify(old.challenge_id, old_code) is VerifyResult.VERIFIED


async def test_gateway_failure_is_recorded_not_raised(world: World) -> None:
    """When the gateway refuses, the challenge exists (its SMS was queued) with delivery FAILED and can be
    resent."""
    world.sms.fail()
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    assert challenge.delivery is DeliveryState.QUEUED
    assert (
        await world.store.challenges.get_challenge(challenge.challenge_id)
    ).delivery is DeliveryState.FAILED
    world.sms.recover()
    world.clock.advance(SPACING)
    resent = await world.flows.resend(challenge.challenge_id, NO_CONTEXT)
    assert resent.delivery is DeliveryState.QUEUED
    assert (await world.store.challenges.get_challenge(challenge.challenge_id)).delivery is DeliveryState.SENT


async def test_resend_sends_the_same_code_and_resets_no_counter(world: World) -> None:
    """A resend delivers the very code of the first SMS and leaves the attempts spent as they were."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    first = world.last_code()
    await world.verify(challenge.challenge_id, wrong(first))
    world.clock.advance(SPACING)
    resent = await world.flows.resend(challenge.challenge_id, NO_CONTEXT)
    assert world.last_code() == first
    assert resent.attempts == 1
    assert resent.resends_left == 2


async def test_resend_too_soon_is_refused_with_the_wait(world: World) -> None:
    """Ten seconds after the first send, a resend waits the twenty seconds left and sends nothing."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    world.clock.advance(timedelta(seconds=10))
    with pytest.raises(ResendRefused) as caught:
        await world.flows.resend(challenge.challenge_id, NO_CONTEXT)
    assert caught.value.retry_after == timedelta(seconds=20)
    assert len(world.sms.sent) == 1


async def test_resends_run_out(world: World) -> None:
    """After the policy's three resends, a fourth is refused for good (no wait helps)."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    for _ in range(3):
        world.clock.advance(SPACING)
        await world.flows.resend(challenge.challenge_id, NO_CONTEXT)
    world.clock.advance(SPACING)
    with pytest.raises(ResendRefused) as caught:
        await world.flows.resend(challenge.challenge_id, NO_CONTEXT)
    assert caught.value.retry_after is None
    assert len(world.sms.sent) == 4


async def test_resend_is_refused_once_closed(world: World) -> None:
    """A verified challenge is not resent."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    await world.verify(challenge.challenge_id, world.last_code())
    world.clock.advance(SPACING)
    with pytest.raises(ChallengeClosed):
        await world.flows.resend(challenge.challenge_id, NO_CONTEXT)


async def test_resend_after_expiry_is_refused(world: World) -> None:
    """No code is sent for a challenge past its lifetime."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    world.clock.advance(timedelta(minutes=6))
    with pytest.raises(ChallengeClosed):
        await world.flows.resend(challenge.challenge_id, NO_CONTEXT)
    assert len(world.sms.sent) == 1


async def test_resend_is_journaled_with_the_context(world: World) -> None:
    """Accepted and refused resends both leave a journal entry carrying the end user's context."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    context = RequestContext(ip="203.0.113.9", session_id="s-2")
    with pytest.raises(ResendRefused):
        await world.flows.resend(challenge.challenge_id, context)
    world.clock.advance(SPACING)
    await world.flows.resend(challenge.challenge_id, context)
    resends = [
        e
        for e in await world.store.journal.challenge_journal(challenge.challenge_id)
        if e["event"] == "challenge.resend"
    ]
    assert [(e["outcome"], e["ip"], e["session_id"]) for e in resends] == [
        ("too_soon", "203.0.113.9", "s-2"),
        ("resent", "203.0.113.9", "s-2"),
    ]


async def test_policy_sets_digits_and_attempts() -> None:
    """An 8-digit, 1-attempt policy gives 8-digit codes and locks on the first wrong one."""
    world = World(ChallengePolicy(digits=8, max_attempts=1))
    challenge = await world.flows.start(StartRequest(await world.enrol(), Login(), NO_CONTEXT))
    code = world.last_code()
    assert len(code) == 8
    wrong = str((int(code) + 1) % 10**8).zfill(8)
    assert await world.verify(challenge.challenge_id, wrong, Login()) is VerifyResult.WRONG_CODE
    assert await world.verify(challenge.challenge_id, code, Login()) is VerifyResult.LOCKED
    assert (
        await world.store.challenges.get_challenge(challenge.challenge_id)
    ).status is ChallengeStatus.LOCKED


async def test_retry_with_the_same_request_id_returns_the_same_challenge(world: World) -> None:
    """An idempotent retry sends no second SMS and answers the first challenge."""
    user_id = await world.enrol()
    first = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT, "req-1"))
    again = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT, "req-1"))
    assert again.challenge_id == first.challenge_id
    assert len(world.sms.sent) == 1


async def test_request_id_reused_for_another_operation_is_refused(world: World) -> None:
    """The same idempotency key cannot authorise a different operation."""
    user_id = await world.enrol()
    await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT, "req-1"))
    with pytest.raises(InvalidRequest) as caught:
        await world.flows.start(StartRequest(user_id, Login(), NO_CONTEXT, "req-1"))
    assert caught.value.violations[0].field == "request_id"


async def test_five_wrong_codes_in_a_row_block_the_user_across_challenges(world: World) -> None:
    """Three wrong codes on one challenge and two on the next block new challenges for fifteen minutes."""
    user_id = await world.enrol()
    for wrong_codes in (3, 2):
        challenge = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
        for _ in range(wrong_codes):
            assert (
                await world.verify(challenge.challenge_id, wrong(world.last_code()))
                is VerifyResult.WRONG_CODE
            )
    sent = len(world.sms.sent)
    with pytest.raises(UserBlocked) as caught:
        await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
    assert caught.value.retry_after == timedelta(minutes=15)
    assert len(world.sms.sent) == sent
    world.clock.advance(timedelta(minutes=15))
    await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))


async def test_a_right_code_resets_the_count_of_wrong_ones(world: World) -> None:
    """Four wrong codes, a right one, then four more do not block: only wrong codes in a row count."""
    user_id = await world.enrol()
    for _ in range(2):
        for wrong_codes in (2, 2):
            challenge = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
            for _ in range(wrong_codes):
                await world.verify(challenge.challenge_id, wrong(world.last_code()))
        challenge = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
        assert await world.verify(challenge.challenge_id, world.last_code()) is VerifyResult.VERIFIED
    assert (await world.store.users.get_user(user_id)).failures == 0


async def test_an_operation_mismatch_is_not_a_wrong_code(world: World) -> None:
    """A right code for a changed operation voids the challenge but counts no failure for the user."""
    user_id = await world.enrol()
    challenge = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
    result = await world.verify(challenge.challenge_id, world.last_code(), Login())
    assert result is VerifyResult.OPERATION_MISMATCH
    assert (await world.store.users.get_user(user_id)).failures == 0


def test_block_lengths_double_up_to_the_longest() -> None:
    """15 min, 30, 60, ... capped at 24 h, and no overflow however many blocks in a row."""
    lockout = LockoutPolicy()
    assert [lockout.block_length(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (15, 30, 60)]
    assert lockout.block_length(7) == timedelta(hours=16)
    assert lockout.block_length(8) == timedelta(hours=24)
    assert lockout.block_length(10_000) == timedelta(hours=24)


class VoidingDown(MemoryChallenges):
    """Challenges whose voiding fails, as Redis would when it goes away right after a decision."""

    async def void_challenge(self, challenge_id: str, voiding: Voiding) -> VoidOutcome:
        raise StoreUnavailable("ConnectionError")


async def five_wrong_codes(world: World, user_id: str) -> list[str]:
    """Open two challenges, then guess 3 + 2 wrong codes on them; the ids, in order."""
    challenges = [await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT)) for _ in range(2)]
    codes_sent = [code_in(message.text) for message in world.sms.sent[-2:]]
    results = [
        await world.verify(challenge.challenge_id, wrong(code))
        for challenge, code, count in zip(challenges, codes_sent, (3, 2), strict=True)
        for _ in range(count)
    ]
    assert results == [VerifyResult.WRONG_CODE] * 5
    return [challenge.challenge_id for challenge in challenges]


async def test_the_block_voids_pending_challenges_and_alerts_the_user_once(world: World) -> None:
    """The fifth wrong code voids the user's open challenges and sends one alert, without a code."""
    user_id = await world.enrol()
    opened = await five_wrong_codes(world, user_id)
    assert (await world.store.challenges.get_challenge(opened[1])).status is ChallengeStatus.VOIDED
    alert = world.sms.sent[-1]
    assert (alert.to, alert.challenge_id) == (PHONE, "")
    assert "12:15 UTC" in alert.text
    assert not re.search(r"\d{6}", alert.text)
    notices = [e for e in await world.store.users.user_journal(user_id) if e["event"] == "user.notice"]
    assert [(n["kind"], n["outcome"]) for n in notices] == [("user_blocked", "sent")]


async def test_a_failed_voiding_or_alert_never_changes_the_answer() -> None:
    """With voiding and the gateway down, the fifth wrong code still answers WRONG_CODE and blocks."""
    world = World()
    world.store = dataclasses.replace(world.store, challenges=VoidingDown(world.store.memory))
    world.flows = flows_over(world.keys, world.store, world.sms, world.clock, ChallengePolicy())
    user_id = await world.enrol()
    challenges = [await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT)) for _ in range(2)]
    codes_sent = [code_in(message.text) for message in world.sms.sent]
    for _ in range(3):
        await world.verify(challenges[0].challenge_id, wrong(codes_sent[0]))
    await world.verify(challenges[1].challenge_id, wrong(codes_sent[1]))
    world.sms.fail()
    assert await world.verify(challenges[1].challenge_id, wrong(codes_sent[1])) is VerifyResult.WRONG_CODE
    assert await world.verify(challenges[1].challenge_id, codes_sent[1]) is VerifyResult.USER_BLOCKED
    notices = [e for e in await world.store.users.user_journal(user_id) if e["event"] == "user.notice"]
    assert [(n["kind"], n["outcome"]) for n in notices] == [("user_blocked", "failed")]


class CountedOpenings(Untallied):
    """A tally of the challenges opened (the rest dropped)."""

    def __init__(self) -> None:
        self.count = 0

    def opened(self, operation: Operation) -> None:
        self.count += 1


async def test_a_block_whose_caller_gave_up_still_voids_the_users_other_challenges(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fifth wrong code's caller cancels as the other challenges are being voided: they are voided all
    the same (they stayed open, and a code of one verified after the block: an outside audit)."""
    user_id = await world.enrol()
    opened = []
    for _ in range(3):
        challenge = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
        opened.append((challenge.challenge_id, world.last_code()))
    (first, first_code), (second, second_code), (third, _) = opened
    for _ in range(3):
        await world.verify(first, wrong(first_code))
    await world.verify(second, wrong(second_code))
    reached, release = held(monkeypatch, world.store.challenges, "pending_challenges")
    fifth = asyncio.ensure_future(world.verify(second, wrong(second_code)))
    await given_up(fifth, reached, release)
    assert (await world.store.users.get_user(user_id)).blocked_until is not None
    assert (await world.store.challenges.get_challenge(third)).status is ChallengeStatus.VOIDED


async def test_a_start_whose_caller_gave_up_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its challenge opened and its SMS queued after its caller left: counted all the same (it was not)."""
    counted = CountedOpenings()
    world = World(tally=counted)
    user_id = await world.enrol()
    reached, release = held(monkeypatch, world.store.challenges, "start_challenge")
    start = asyncio.ensure_future(world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT)))
    await given_up(start, reached, release)
    assert counted.count == 1

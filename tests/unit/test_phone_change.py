"""ChangeSecurePhone over fakes: the authority, the change, the notice to the old number, the cooling."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sesame.server.domain.enrollment import PhoneRequest, StatusRequest
from sesame.server.domain.errors import (
    ChallengeConsumed,
    ChallengeMismatch,
    ChallengeNotVerified,
    PhoneCooling,
    PhoneUnchanged,
    UserNotActive,
)
from sesame.server.domain.lifecycle import Authority, ByChallenge, ByOverride
from sesame.server.domain.model import Challenge, UserStatus, VerifyResult
from sesame.server.domain.operation import AddBeneficiary, ChangePhone, Login, Operation, Payee
from sesame.server.domain.phone_change import PhoneChangeResult
from tests.fakes.world import NO_CONTEXT, PHONE, TRANSFER, World, by

NEW_PHONE = "+33698765432"
OVERRIDE = ByOverride("agent-7")
BENEFICIARY = AddBeneficiary(Payee("Zoé Durand", "DE89370400440532013000"))


@pytest.fixture
def world() -> World:
    return World()


async def change(
    world: World, authority: Authority, request_id: str = "p-1", new_phone: str = NEW_PHONE
) -> PhoneChangeResult:
    reason = "identité vérifiée en agence" if isinstance(authority, ByOverride) else ""
    request = PhoneRequest("alice", new_phone, authority, by(request_id, reason=reason), NO_CONTEXT)
    return await world.registry.change_phone(request)


async def verified_for(world: World, new_phone: str = NEW_PHONE) -> Challenge:
    """A change_phone challenge for `new_phone`, sent to the current number and verified."""
    challenge = await world.start("alice", ChangePhone(new_phone))
    await world.verify(challenge, world.last_code())
    return challenge


async def test_a_verified_challenge_moves_the_codes_to_the_new_number(world: World) -> None:
    """After the change the next code goes to the new number, and the old number got a notice."""
    await world.enrol()
    challenge = await verified_for(world)
    result = await change(world, ByChallenge(challenge.challenge_id))
    assert (result.user.secure_phone, result.old_phone_notified) == (NEW_PHONE, True)
    # Queued by the change (decision 0041): nothing sent before a dispatcher takes it.
    assert world.sms.sent[-1].challenge_id == challenge.challenge_id
    await world.challenges.dispatch_all()
    notice = world.sms.sent[-1]
    assert (notice.to, notice.challenge_id) == (PHONE, "")
    assert "numéro sécurisé a été changé pour le +33*******32" in notice.text
    await world.start("alice", Login())
    assert world.sms.sent[-1].to == NEW_PHONE


async def test_codes_already_sent_to_the_old_number_are_voided(world: World) -> None:
    """A login challenge still open on the old number answers VOIDED once the number changed."""
    await world.enrol()
    pending = await world.start("alice", Login())
    code = world.last_code()
    result = await change(world, OVERRIDE)
    assert result.voided == 1
    assert await world.verify(pending, code) is VerifyResult.VOIDED


async def test_the_notice_carries_no_code(world: World) -> None:
    """The notice to the old number holds no run of four digits or more."""
    await world.enrol()
    await change(world, OVERRIDE)
    await world.challenges.dispatch_all()
    text = world.sms.sent[-1].text
    assert not any(len(run) >= 4 for run in "".join(c if c.isdigit() else " " for c in text).split())


@pytest.mark.parametrize("operation", [TRANSFER, BENEFICIARY], ids=["transfer", "beneficiary"])
async def test_payments_wait_for_the_cooling_period_but_login_does_not(
    world: World, operation: Operation
) -> None:
    """For 72 hours transfers and new payees are refused with the time left; a login goes through."""
    await world.enrol()
    await change(world, OVERRIDE)
    world.clock.advance(timedelta(hours=1))
    with pytest.raises(PhoneCooling) as caught:
        await world.start("alice", operation)
    assert caught.value.retry_after == timedelta(hours=71)
    await world.start("alice", Login())
    world.clock.advance(timedelta(hours=71))
    await world.start("alice", operation)


async def test_a_challenge_for_another_number_is_refused_and_not_spent(world: World) -> None:
    """A code for changing to one number does not authorise another, and stays usable for its own."""
    await world.enrol()
    challenge = await verified_for(world, "+33611111111")
    with pytest.raises(ChallengeMismatch):
        await change(world, ByChallenge(challenge.challenge_id))
    result = await change(world, ByChallenge(challenge.challenge_id), "p-2", "+33611111111")
    assert result.user.secure_phone == "+33611111111"


async def test_a_challenge_authorises_one_change_only(world: World) -> None:
    """The same challenge under another request id is ChallengeConsumed."""
    await world.enrol()
    challenge = await verified_for(world)
    await change(world, ByChallenge(challenge.challenge_id))
    with pytest.raises(ChallengeConsumed):
        await change(world, ByChallenge(challenge.challenge_id), "p-2")


async def test_a_retried_change_sends_no_second_notice(world: World) -> None:
    """The same request again answers the changed user, without a second notice."""
    await world.enrol()
    challenge = await verified_for(world)
    await change(world, ByChallenge(challenge.challenge_id))
    sent = len(world.sms.sent)
    again = await change(world, ByChallenge(challenge.challenge_id))
    assert (again.user.secure_phone, again.old_phone_notified) == (NEW_PHONE, False)
    assert len(world.sms.sent) == sent


async def test_an_unverified_challenge_authorises_nothing(world: World) -> None:
    """A change_phone challenge still open is ChallengeNotVerified."""
    await world.enrol()
    challenge = await world.start("alice", ChangePhone(NEW_PHONE))
    with pytest.raises(ChallengeNotVerified):
        await change(world, ByChallenge(challenge.challenge_id))


async def test_another_users_challenge_is_a_mismatch(world: World) -> None:
    """Bob's verified challenge for the same new number does not change Alice's."""
    await world.enrol()
    await world.enrol("bob")
    challenge = await world.start("bob", ChangePhone(NEW_PHONE))
    await world.verify(challenge, world.last_code())
    with pytest.raises(ChallengeMismatch):
        await change(world, ByChallenge(challenge.challenge_id))


async def test_a_challenge_verified_before_a_suspension_authorises_nothing(world: World) -> None:
    """A thief's verified code, from before the loss was reported, is useless after the reinstatement."""
    await world.enrol()
    challenge = await verified_for(world)
    world.clock.advance(timedelta(minutes=1))
    await world.suspend()
    await world.registry.reinstate(StatusRequest("alice", by("r-1")))
    with pytest.raises(ChallengeMismatch):
        await change(world, ByChallenge(challenge.challenge_id))
    assert (await world.store.users.get_user("alice")).secure_phone == PHONE


async def test_since_the_challenge_is_counted_whatever_the_suspensions_stamp(world: World) -> None:
    """Suspended and reinstated after the code was verified, by a host a minute behind (decision 0056): the
    steps came after the challenge opened, so the code authorises nothing, whatever their stamps say."""
    await world.enrol()
    challenge = await verified_for(world)
    world.clock.advance(-timedelta(minutes=1))
    await world.suspend()
    await world.registry.reinstate(StatusRequest("alice", by("r-1")))
    with pytest.raises(ChallengeMismatch):
        await change(world, ByChallenge(challenge.challenge_id))
    assert (await world.store.users.get_user("alice")).secure_phone == PHONE


async def test_a_challenge_opened_before_the_counts_keeps_the_time_rule(world: World) -> None:
    """A challenge without the opening's counts (opened by the version before decision 0056) is compared by
    time: a suspension stamped after it opened voids it."""
    await world.enrol()
    challenge = await verified_for(world)
    world.store.memory._opened_changes.pop(challenge.challenge_id)  # as a hash without `user_changes`
    world.clock.advance(timedelta(minutes=1))
    await world.suspend()
    await world.registry.reinstate(StatusRequest("alice", by("r-1")))
    with pytest.raises(ChallengeMismatch):
        await change(world, ByChallenge(challenge.challenge_id))
    assert (await world.store.users.get_user("alice")).secure_phone == PHONE


async def test_a_suspended_users_number_changes_by_override_only(world: World) -> None:
    """After a lost phone a challenge is refused; the back office's override goes through."""
    await world.enrol()
    challenge = await verified_for(world)
    await world.suspend()
    with pytest.raises(UserNotActive):
        await change(world, ByChallenge(challenge.challenge_id))
    result = await change(world, OVERRIDE, "p-2")
    assert (result.user.status, result.user.secure_phone) == (UserStatus.SUSPENDED, NEW_PHONE)


async def test_an_override_queues_the_notice_to_the_old_number(world: World) -> None:
    """The override's notice is queued in its step (decision 0041): nothing sent before a dispatcher takes
    it, then sent once to the old number, and the old number it was kept for is gone with the entry."""
    await world.enrol()
    result = await change(world, OVERRIDE)
    assert (result.user.secure_phone, result.old_phone_notified) == (NEW_PHONE, True)
    assert world.sms.sent == []
    await world.challenges.dispatch_all()
    await world.challenges.dispatch_all()
    assert [(sms.to, sms.challenge_id) for sms in world.sms.sent] == [(PHONE, "")]
    assert "numéro sécurisé a été changé pour le +33*******32" in world.sms.sent[0].text
    entry = (await world.store.users.user_journal("alice"))[-1]
    assert (entry["event"], entry["outcome"], entry["phone"]) == ("user.notice", "sent", "+33*******78")
    assert world.store.outbox.addressees == {}


async def test_an_override_notice_no_provider_takes_is_journaled_failed(world: World) -> None:
    """When the gateway refuses the notice the change stands (the answer says it was queued), the failed
    try is journaled, and once dead-lettered nothing keeps the old number for it."""
    await world.enrol()
    world.sms.fail()
    result = await change(world, OVERRIDE)
    assert (result.user.secure_phone, result.old_phone_notified) == (NEW_PHONE, True)
    await world.challenges.dispatch_all()
    entry = (await world.store.users.user_journal("alice"))[-1]
    assert (entry["event"], entry["outcome"], entry["phone"]) == ("user.notice", "failed", "+33*******78")
    assert world.store.outbox.addressees == {}


async def test_the_same_number_is_not_a_change(world: World) -> None:
    """Changing to the current number is PhoneUnchanged and sends nothing."""
    await world.enrol()
    with pytest.raises(PhoneUnchanged):
        await change(world, OVERRIDE, new_phone=PHONE)
    assert world.sms.sent == []


async def test_a_revoked_users_number_does_not_change(world: World) -> None:
    """Even an override cannot change a revoked user's number."""
    await world.enrol()
    await world.registry.revoke(StatusRequest("alice", by("v-1")))
    with pytest.raises(UserNotActive):
        await change(world, OVERRIDE)


async def test_an_unknown_user_reads_as_a_bad_challenge(world: World) -> None:
    """No user, or a user with a challenge never issued: the same ChallengeMismatch, naming the challenge."""
    never_issued = f"{'0' * 32}.k1.d6.u{'0' * 16}"
    with pytest.raises(ChallengeMismatch) as unknown_user:
        await change(world, ByChallenge(never_issued))
    await world.enrol()
    with pytest.raises(ChallengeMismatch) as known_user:
        await change(world, ByChallenge(never_issued))
    assert str(unknown_user.value) == str(known_user.value) == never_issued

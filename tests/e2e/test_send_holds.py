"""The number's, caller's and global send units held in their own slot by a second script sent with
Start's step, spent by the dispatcher when it hands the SMS over (decision 0046): a refusal of either
script leaves nothing behind, a crash between them leaks nothing past the grace, and no SMS goes without
its units. Through the real server, Redis and SoftHSM; the SMS are the console gateway's file."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.dispatch_loop import DispatchSettings
from sesame.server.domain.budgets import BudgetSubject, Charge, Hold, SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.model import ChallengeStatus, DeliveryState
from sesame.server.domain.risk_signals import IN_FLIGHT_READ
from tests.contracts.test_start_challenge_contract import an_opening
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, PHONE, enrolled, keys_written, transfer
from tests.e2e.test_flows import rich_details
from tests.support.console_sms import written
from tests.support.outbox import settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NUMBER = BudgetSubject.phone(PHONE)
CALLER = BudgetSubject.caller("")
EVERYONE = BudgetSubject.overall()
ROOMY = dict(per_user=100, per_phone=100, per_caller=100, overall=100)  # noqa: C408 (settings by name)
LOGIN = op_pb.Operation(login=op_pb.Login())
QUICK = timedelta(seconds=1)  # a short grace, so that a test sees it pass


def code_sms(sms_file: Path) -> list[str]:
    """The challenge ids of the code SMS handed to the console gateway so far."""
    return [sms["challenge_id"] for sms in written(sms_file) if sms["challenge_id"]]


def start(user_id: str = "alice", request_id: str = "") -> auth_pb.StartChallengeRequest:
    return auth_pb.StartChallengeRequest(
        user_id=user_id, operation=transfer(), context=CONTEXT, request_id=request_id
    )


async def refusal(live: Live, request: auth_pb.StartChallengeRequest) -> tuple[str, timedelta]:
    """The budget a refused Start names, and its RetryInfo's wait."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(request)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    quota, retry = error_details_pb2.QuotaFailure(), error_details_pb2.RetryInfo()
    details = rich_details(caught.value)
    assert details[0].Unpack(quota)
    assert details[1].Unpack(retry)
    return quota.violations[0].subject, retry.retry_delay.ToTimedelta()


async def challenge_ids(client: aioredis.Redis) -> set[str]:
    """The id of every challenge hash (`<place>:ch:<id>`; its journal and other keys left out)."""
    tails = [key.decode().partition(":ch:")[2] async for key in client.scan_iter(match="*:ch:*")]
    return {tail for tail in tails if ":" not in tail}


async def held_units(client: aioredis.Redis, live: Live, subject: BudgetSubject) -> int:
    """Units held (not spent) in a `{sb}` budget: ZCARD of its held set."""
    return int(await client.zcard(live.store.keys.send_units_held(subject.kind.value, subject.key)))


async def spent_units(client: aioredis.Redis, live: Live, subject: BudgetSubject) -> int:
    return int(await client.zcard(live.store.keys.send_budget(subject.kind.value, subject.key)))


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=SendBudget(**{**ROOMY, "per_user": 1}))])
async def test_a_refused_step_gives_the_held_units_back(live: Live, redis_client: aioredis.Redis) -> None:
    """The user's budget of one refuses the second Start in its step; the take sent with it had held the
    number's, caller's and global units: they are given back, and only the SMS that went spent any."""
    await enrolled(live)
    await live.auth.StartChallenge(start())
    assert (await refusal(live, start()))[0] == "user"
    await settled(live.store)
    for subject in (NUMBER, CALLER, EVERYONE):
        assert await held_units(redis_client, live, subject) == 0
        assert await spent_units(redis_client, live, subject) == 1
    assert len(code_sms(live.sms_file)) == 1


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=SendBudget(**{**ROOMY, "per_caller": 1}))])
async def test_a_refused_take_voids_the_opened_challenge_and_no_sms_is_ever_sent(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The caller's ceiling of one refuses the second Start's take while its step opened a challenge:
    RESOURCE_EXHAUSTED on `caller` as before, the challenge voided (journaled, reason send_budget), its
    SMS never handed over, nothing spent; a retry of the request id starts afresh (refused again), it is
    not answered the voided challenge."""
    for user_id, phone in (("alice", PHONE), ("bob", "+33612000001")):
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=phone)
        )
    sent = await live.auth.StartChallenge(start())
    subject, wait = await refusal(live, start("bob", "r-1"))
    assert subject == "caller"
    assert timedelta(seconds=59) < wait <= timedelta(seconds=60)
    (voided,) = await challenge_ids(redis_client) - {sent.challenge_id}
    assert (await live.store.challenges.get_challenge(voided)).status is ChallengeStatus.VOIDED
    assert await live.store.challenges.pending_challenges("bob", datetime.now(UTC)) == []  # closed (0093)
    journal = await live.store.journal.challenge_journal(voided)
    assert [e.get("void_reason") for e in journal if e["event"] == "challenge.void"] == ["send_budget"]
    assert await redis_client.zcard(live.store.keys.send_budget("user", "bob")) == 0  # its unit came back
    assert (await refusal(live, start("bob", "r-1")))[0] == "caller"
    await settled(live.store)
    await asyncio.sleep(0.5)  # the dispatcher settled its entry: nothing else is left to send it
    assert code_sms(live.sms_file) == [sent.challenge_id]
    assert await spent_units(redis_client, live, CALLER) == 1


@pytest.mark.parametrize(
    "policy", [ChallengePolicy(send_budget=SendBudget(**{**ROOMY, "per_phone": 1}, hold_grace=QUICK))]
)
async def test_a_hold_left_by_a_crash_stops_counting_after_the_grace(live: Live) -> None:
    """take_send_units ran alone (its Start died before its step): the number's unit counts while the
    grace runs (the Start is refused on `phone`, with the wait until the hold would free if spent), then
    no longer: the next Start opens and its SMS goes."""
    await enrolled(live)
    at = datetime.now(UTC)
    crashed = Hold("crashed-start", at, at + timedelta(minutes=5), QUICK)
    await live.store.send_units.take(crashed, (Charge(NUMBER, 1, timedelta(hours=1)),))
    assert (await refusal(live, start()))[0] == "phone"
    await asyncio.sleep(max(0.0, (at + QUICK - datetime.now(UTC)).total_seconds()) + 0.05)
    opened = await live.auth.StartChallenge(start())
    await settled(live.store)
    assert code_sms(live.sms_file) == [opened.challenge_id]


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=SendBudget(**ROOMY, hold_grace=QUICK))])
@pytest.mark.parametrize("dispatch", [DispatchSettings(claim_idle=timedelta(seconds=1))])
async def test_the_dispatcher_does_not_send_a_challenge_without_holds(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Start's step ran alone (its worker died before the take): the challenge is open, its SMS queued,
    but no unit is held for it. The dispatcher leaves it pending through the grace, then dead-letters it
    (`unheld`): never handed to the gateway, no unit spent."""
    await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id="u-1", client_id="acme", secure_phone=PHONE)
    )
    opening = an_opening()
    opened = await live.store.challenges.start_challenge(opening)
    assert opened.queued
    async with asyncio.timeout(15):
        while (  # noqa: ASYNC110 (the dispatcher is another task's)
            await live.store.challenges.get_challenge(opening.challenge_id)
        ).delivery is not DeliveryState.FAILED:
            await asyncio.sleep(0.05)
    await settled(live.store)
    assert code_sms(live.sms_file) == []
    assert await spent_units(redis_client, live, NUMBER) == 0
    outbox = live.store.outbox()
    try:
        letters = await outbox.dead_letters().recent(10)
    finally:
        await outbox.close()
    assert [(letter.challenge_id, letter.reason) for letter in letters] == [(opening.challenge_id, "unheld")]


@pytest.mark.parametrize(
    "policy",
    [ChallengePolicy(send_budget=SendBudget(**{**ROOMY, "per_phone": 1}), resend_spacing=timedelta(0))],
)
async def test_a_resend_whose_units_are_refused_spends_no_resend_and_sends_nothing(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The number's budget of one, spent by the Start's SMS, refuses the resend's take while its step took
    the resend: RESOURCE_EXHAUSTED on `phone`, the resend and the user's unit given back (journaled
    `withdrawn`), its SMS never handed over (decision 0046)."""
    await enrolled(live)
    opened = await live.auth.StartChallenge(start())
    await settled(live.store)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.ResendChallenge(auth_pb.ResendChallengeRequest(challenge_id=opened.challenge_id))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    quota = error_details_pb2.QuotaFailure()
    assert rich_details(caught.value)[0].Unpack(quota)
    assert [v.subject for v in quota.violations] == ["phone"]
    assert (await live.store.challenges.get_challenge(opened.challenge_id)).resends == 0
    assert await redis_client.zcard(live.store.keys.send_budget("user", "alice")) == 1
    journal = await live.store.journal.challenge_journal(opened.challenge_id)
    assert [e["outcome"] for e in journal if e["event"] == "challenge.resend"] == ["resent", "withdrawn"]
    await settled(live.store)
    await asyncio.sleep(0.5)  # the dispatcher settled the withdrawn resend's entry
    after_first = await keys_written(redis_client)
    journal = await live.store.journal.challenge_journal(opened.challenge_id)
    # Found from outside (AT3): each resend refused again took the resend, journaled it and its withdrawal
    # and left a dead letter (602 entries for 200 calls). Refused before its step now: nothing more.
    for _ in range(50):
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await live.auth.ResendChallenge(auth_pb.ResendChallengeRequest(challenge_id=opened.challenge_id))
        assert again.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await live.store.journal.challenge_journal(opened.challenge_id) == journal
    assert await keys_written(redis_client) == after_first
    assert code_sms(live.sms_file) == [opened.challenge_id]
    assert await spent_units(redis_client, live, NUMBER) == 1


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=SendBudget(**ROOMY))])
async def test_a_user_with_as_many_open_as_the_risk_step_reads_waits(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """A caller with a roomy budget opens IN_FLIGHT_READ logins for one user: the next Start, a transfer,
    is refused as the user's budget (RetryInfo: until the first expires), its held units given back and
    nothing sent, while a retry of a login's request id is still answered its challenge; one login
    cancelled, the transfer opens. Before decision 0095 it opened, and the risk step's in-flight read,
    bounded at IN_FLIGHT_READ, no longer saw every open transfer."""
    await enrolled(live)
    login = auth_pb.StartChallengeRequest(user_id="alice", operation=LOGIN, context=CONTEXT)
    first = await live.auth.StartChallenge(login)
    retried = auth_pb.StartChallengeRequest(
        user_id="alice", operation=LOGIN, context=CONTEXT, request_id="r-1"
    )
    claimed = await live.auth.StartChallenge(retried)
    for _ in range(IN_FLIGHT_READ - 2):
        await live.auth.StartChallenge(login)
    subject, wait = await refusal(live, start())
    assert subject == "user"
    assert (await live.auth.StartChallenge(retried)).challenge_id == claimed.challenge_id
    lifetime = first.expires_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert lifetime - timedelta(seconds=5) < wait <= lifetime + timedelta(seconds=1)
    await settled(live.store)
    for subject_of in (NUMBER, CALLER, EVERYONE):
        assert await held_units(redis_client, live, subject_of) == 0
        assert await spent_units(redis_client, live, subject_of) == IN_FLIGHT_READ
    assert len(await challenge_ids(redis_client)) == IN_FLIGHT_READ
    await live.auth.CancelChallenge(
        auth_pb.CancelChallengeRequest(challenge_id=first.challenge_id, context=CONTEXT)
    )
    opened = await live.auth.StartChallenge(start())
    await settled(live.store)
    assert opened.challenge_id in code_sms(live.sms_file)
    assert len(code_sms(live.sms_file)) == IN_FLIGHT_READ + 1


@pytest.mark.parametrize(
    ("policy", "subject", "bobs_phone"),
    [
        (ChallengePolicy(send_budget=SendBudget(**{**ROOMY, "per_caller": 1})), "caller", "+33612000001"),
        (ChallengePolicy(send_budget=SendBudget(**{**ROOMY, "per_phone": 1})), "phone", PHONE),  # alice's
    ],
)
async def test_starts_repeated_past_a_spent_budget_open_nothing_more(
    live: Live, redis_client: aioredis.Redis, subject: str, bobs_phone: str
) -> None:
    """Found from outside (AQ1, AQ2): each Start past the caller's spent ceiling opened a challenge,
    journaled it and voided it (1.7 KB kept a day in Redis, 2.7 KB in the archive, per call of a caller
    pumping SMS), and `sesame_challenges_voided_total{reason="send_budget"}` never counted one. The first
    refusal still opens and voids one, counted; the next 100 are refused before their step. The AQ1
    remainder: with a fresh request id each, or past a number's budget two users share, each still opened
    and voided one; now refused before the step too."""
    for user_id, phone in (("alice", PHONE), ("bob", bobs_phone)):
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=phone)
        )
    sent = await live.auth.StartChallenge(start("alice", "r-a"))
    assert (await refusal(live, start("bob", "r-0")))[0] == subject
    await settled(live.store)
    await asyncio.sleep(0.5)  # the dispatcher settled the voided challenge's entry (a dead letter)
    after_first = await keys_written(redis_client)
    for attempt in range(100):
        assert (await refusal(live, start("bob", f"r-{attempt}" if attempt % 2 else "")))[0] == subject
    assert len(await challenge_ids(redis_client) - {sent.challenge_id}) == 1
    assert await keys_written(redis_client) == after_first
    voided = live.metrics.registry.get_sample_value(
        "sesame_challenges_voided_total", {"reason": "send_budget"}
    )
    assert voided == 1
    # A retry of a request id is answered its challenge by the step, never refused ahead of it (AT2).
    assert (await live.auth.StartChallenge(start("alice", "r-a"))).challenge_id == sent.challenge_id


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=SendBudget(**{**ROOMY, "per_phone": 1}))])
async def test_a_user_moved_off_a_spent_number_gets_its_code_on_the_new_one(live: Live) -> None:
    """Found from outside (AT1): after a Start refused on the user's spent number, the user moved to another
    number was still refused on the old one's budget (its whole window with this session's first fix, its
    first Start before it): the number the worker recalled was taken, refused, and the challenge voided.
    The units are taken again with the number the step sent the code to."""
    for user_id in ("alice", "bob"):  # one number, spent by alice's Start
        await enrolled(live, user_id)
    await live.auth.StartChallenge(start())
    for _ in range(2):
        assert (await refusal(live, start("bob")))[0] == "phone"
    await live.enrol.OverrideSecurePhone(
        enrol_pb.OverrideSecurePhoneRequest(
            user_id="bob",
            new_phone="+33612000002",
            operator="agent-7",
            reason="lost",
            request_id="o-1",
            actor="ops",
        )
    )
    moved = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id="bob", operation=LOGIN, context=CONTEXT)
    )
    assert moved.masked_phone.endswith("02")

"""Risk rules through the real server (docs/risk.md): the judgment's fraud replayed, a DENY, a silence.

Tribunal judiciaire de Paris, 30 January 2024 (RG 22/09134, ../shared/seeds/003): a caller posing as the
bank got two beneficiaries added on 28 August 2019; transfers of 5,928, 5,918 and 5,600 EUR followed on the
29th, 30th and 31st, validated from the customer's own phone. Each runs against real Redis, SoftHSM and
gRPC; the server's clock is moved forward between the customer's days.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2, status_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients import redis_records as rec
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live, live_with_sim_swap
from tests.e2e.helpers import CONTEXT, PHONE, counted, enrolled, snapshot, transfer
from tests.e2e.test_sms_text_journaled import TEMPLATES
from tests.support.camara_sim_swap import Operator
from tests.support.outbox import settled
from tests.support.risk_reads import denials_in

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
LANDLORD = "FR7630001007941234567890185"
GROCER = "FR1420041010050500013M02606"
FRAUD_A = "DE89370400440532013000"
FRAUD_B = "FR7630006000011234567890189"


def beneficiary(iban: str, name: str = "L J H") -> op_pb.Operation:
    return op_pb.Operation(add_beneficiary=op_pb.AddBeneficiary(payee=op_pb.Payee(name=name, iban=iban)))


async def authorised(live: Live, user_id: str, operation: op_pb.Operation) -> auth_pb.StartChallengeResponse:
    """Start, read the SMS, verify: the customer approves the operation from the phone."""
    started = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=operation, context=CONTEXT)
    )
    _, code = await read_code(live.sms_file, started.challenge_id)
    verified = await live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=started.challenge_id, code=code, operation=operation, context=CONTEXT
        )
    )
    assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED
    return started


def codes(response: auth_pb.StartChallengeResponse) -> set[str]:
    return {reason.code for reason in response.risk.reasons}


async def an_ordinary_past(live: Live, user_id: str) -> None:
    """Three months of rent and groceries, approved from the same phone."""
    await authorised(live, user_id, beneficiary(LANDLORD, "Bailleur"))
    await authorised(live, user_id, beneficiary(GROCER, "Epicerie"))
    for _ in range(3):
        live.clock.advance(timedelta(days=10))
        await authorised(live, user_id, transfer(85000, LANDLORD, "Bailleur"))
        live.clock.advance(timedelta(days=3))
        await authorised(live, user_id, transfer(12000, GROCER, "Epicerie"))
        live.clock.advance(timedelta(days=9))
        await authorised(live, user_id, transfer(9500, GROCER, "Epicerie"))


async def test_the_judgments_fraud_is_held_at_each_transfer(live: Live, redis_client: aioredis.Redis) -> None:
    """Two payees 13:07-13:10, then 5,928/5,918/5,600 EUR on the next three days: HOLD, HOLD, HOLD."""
    user_id = await enrolled(live)
    await an_ordinary_past(live, user_id)
    live.clock.advance(timedelta(days=20))
    first = await authorised(live, user_id, beneficiary(FRAUD_A))
    live.clock.advance(timedelta(minutes=3))
    second = await authorised(live, user_id, beneficiary(FRAUD_B, "M K"))
    held = []
    for euros in (5928, 5918, 5600):
        live.clock.advance(timedelta(hours=21) if not held else timedelta(days=1))
        held.append(await authorised(live, user_id, transfer(euros * 100, FRAUD_A, "L J H")))
    assert first.risk.decision == auth_pb.RISK_DECISION_ALLOW
    assert (second.risk.decision, codes(second)) == (auth_pb.RISK_DECISION_WARN, {"PAYEES_BURST"})
    assert [h.risk.decision for h in held] == [auth_pb.RISK_DECISION_HOLD] * 3
    assert codes(held[0]) == {"NEW_PAYEE", "PAYEES_BURST", "UNUSUAL_AMOUNT"}
    assert all(reason.description for reason in held[0].risk.reasons)
    assert held[0].risk.rules_version.startswith("2026-12-06.1+")
    opened = await live.store.journal.challenge_journal(held[0].challenge_id)
    assert opened[0]["event"] == "challenge.opened"
    assert opened[0]["risk_decision"] == "hold"
    assert set(opened[0]["risk_reasons"].split(",")) == {"NEW_PAYEE", "PAYEES_BURST", "UNUSUAL_AMOUNT"}
    assert opened[0]["risk_rules_version"] == held[0].risk.rules_version
    labels = {"operation": "credit_transfer", "decision": "hold"}
    assert await counted(live.metrics.registry, "sesame_risk_decisions_total", labels) == 3
    labels = {"reason": "NEW_PAYEE", "decision": "hold"}
    assert await counted(live.metrics.registry, "sesame_risk_reasons_total", labels) == 3


async def test_ordinary_payments_stay_allowed(live: Live) -> None:
    """Rent after an ordinary past, and a lone payee first paid a week later: ALLOW with no reason."""
    user_id = await enrolled(live)
    await an_ordinary_past(live, user_id)
    live.clock.advance(timedelta(days=20))
    rent = await authorised(live, user_id, transfer(85000, LANDLORD, "Bailleur"))
    await authorised(live, user_id, beneficiary(FRAUD_A, "Plombier"))
    live.clock.advance(timedelta(days=7))
    plumber = await authorised(live, user_id, transfer(30000, FRAUD_A, "Plombier"))
    for response in (rent, plumber):
        assert (response.risk.decision, list(response.risk.reasons)) == (auth_pb.RISK_DECISION_ALLOW, [])


@pytest.fixture(name="guarded")
async def _guarded(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, operator: Operator
) -> AsyncIterator[Live]:
    """A real server asking the local operator's SIM Swap API, with a 300 ms timeout."""
    async with live_with_sim_swap(redis_store, keystore, tmp_path, operator, wait=0.3) as live:
        yield live


def risk_denied(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The metadata of the RISK_DENIED ErrorInfo a FAILED_PRECONDITION carries."""
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    assert status_pb2.Status.FromString(raw).details[0].Unpack(info)
    assert info.reason == "RISK_DENIED"
    return dict(info.metadata)


async def test_a_swapped_sim_is_denied_and_nothing_is_sent(
    guarded: Live, operator: Operator, redis_client: aioredis.Redis
) -> None:
    """The operator says the SIM changed 2 hours ago: RISK_DENIED, no SMS, only the user's journal and its
    count of denials written."""
    user_id = await enrolled(guarded)
    operator.changes[PHONE] = datetime.now(UTC) - timedelta(hours=2)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await guarded.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
        )
    metadata = risk_denied(caught.value)
    assert metadata["reasons"] == "SIM_SWAP"
    assert metadata["reason.SIM_SWAP"]
    assert metadata["rules_version"].startswith("2026-12-06.1+")
    after = await snapshot(redis_client)
    assert {key for key in after if after[key] != before.get(key)} == {
        guarded.store.keys.user_journal(user_id).encode(),
        guarded.store.keys.journal_tail(guarded.store.keys.user_journal(user_id)).encode(),  # its numbering
        guarded.store.keys.user(user_id).encode(),  # the hour's count of denials (decision 0050)
        # the entry, to be sealed (decision 0042), in the feed of the user's shard (decision 0044)
        (guarded.store.keys.place_of_user(user_id) + ":feed").encode(),
        (guarded.store.keys.place_of_user(user_id) + ":feed:last").encode(),
    }
    assert not guarded.sms_file.exists() or guarded.sms_file.read_text(encoding="utf-8") == ""
    (entry,) = denials_in(await guarded.store.users.user_journal(user_id))
    assert (entry["reasons"], entry["op"], entry["ip"]) == ("SIM_SWAP", "credit_transfer", CONTEXT.ip)
    assert PHONE not in str(entry)


async def test_a_retry_whose_memory_now_says_deny_answers_its_challenge(
    guarded: Live, operator: Operator, redis_client: aioredis.Redis
) -> None:
    """A transfer started while the operator cannot tell (WARN SIM_SWAP_UNKNOWN); then the operator says the
    SIM changed. A retry by the same request id answers the challenge its first call opened, with that
    call's assessment and no second SMS (idempotency); a new request id is RISK_DENIED."""
    user_id = await enrolled(guarded)
    first = await guarded.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id=user_id, operation=transfer(), context=CONTEXT, request_id="pay-1"
        )
    )
    assert (first.risk.decision, codes(first)) == (auth_pb.RISK_DECISION_WARN, {"SIM_SWAP_UNKNOWN"})
    await read_code(guarded.sms_file, first.challenge_id)
    await settled(guarded.store)  # its dispatch recorded: what follows writes nothing
    sent = guarded.sms_file.read_text(encoding="utf-8")
    operator.changes[PHONE] = datetime.now(UTC) - timedelta(hours=2)
    before = await snapshot(redis_client)
    again = await guarded.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id=user_id, operation=transfer(), context=CONTEXT, request_id="pay-1"
        )
    )
    assert (again.challenge_id, again.risk) == (first.challenge_id, first.risk)
    assert await snapshot(redis_client) == before  # nothing written: no unit, no denial, no SMS queued
    assert guarded.sms_file.read_text(encoding="utf-8") == sent
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await guarded.auth.StartChallenge(
            auth_pb.StartChallengeRequest(
                user_id=user_id, operation=transfer(), context=CONTEXT, request_id="pay-2"
            )
        )
    assert risk_denied(caught.value)["reasons"] == "SIM_SWAP"
    (entry,) = denials_in(await guarded.store.users.user_journal(user_id))
    assert entry["reasons"] == "SIM_SWAP"


@pytest.mark.parametrize(
    "operation",
    [transfer(), op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone="+33698765432"))],
    ids=["transfer", "change_phone"],
)
async def test_an_operator_that_does_not_answer_in_time_warns_and_sends(
    guarded: Live, operator: Operator, operation: op_pb.Operation
) -> None:
    """Past the timeout the code is sent with WARN SIM_SWAP_UNKNOWN: never a silent ALLOW (a change of
    number was ALLOW: an outside audit's)."""
    user_id = await enrolled(guarded)
    operator.changes[PHONE] = None
    operator.delay = 1.0
    response = await guarded.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=operation, context=CONTEXT)
    )
    assert (response.risk.decision, codes(response)) == (auth_pb.RISK_DECISION_WARN, {"SIM_SWAP_UNKNOWN"})
    await read_code(guarded.sms_file, response.challenge_id)
    labels = {"state": "unavailable"}
    assert await counted(guarded.metrics.registry, "sesame_sim_swap_checks_total", labels) == 1


@pytest.mark.parametrize(
    ("operation", "template"),
    [(transfer(), "credit_transfer_alert"), (beneficiary(FRAUD_B), "add_beneficiary_alert")],
)
async def test_a_code_flagged_for_another_reason_than_a_new_payee_is_sent_with_the_alert(
    guarded: Live, operator: Operator, redis_client: aioredis.Redis, operation: op_pb.Operation, template: str
) -> None:
    """WARN SIM_SWAP_UNKNOWN (no new payee): the SMS carries the operation's alert wording in place of the
    usual warning, and its send is journaled as that template (decision 0043)."""
    user_id = await enrolled(guarded)
    operator.delay = 1.0
    response = await guarded.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=operation, context=CONTEXT)
    )
    assert (response.risk.decision, codes(response)) == (auth_pb.RISK_DECISION_WARN, {"SIM_SWAP_UNKNOWN"})
    text, code = await read_code(guarded.sms_file, response.challenge_id)
    assert "ALERTE : opération inhabituelle. Si on vous a appelé pour " in text
    assert "ARNAQUE" in text
    assert "Pas vous ?" not in text  # the usual warning's words
    await settled(guarded.store)
    entries = await redis_client.xrange(guarded.store.keys.challenge_journal(response.challenge_id))
    [sent] = [e for e in map(rec.decoded, (f for _, f in entries)) if e["event"] == "challenge.delivery"]
    assert sent["template"] == f"fr/{template}"
    assert (
        sent["template_sha256"]
        == hashlib.sha256((TEMPLATES / "fr" / f"{template}.txt").read_bytes()).hexdigest()
    )
    assert "warning_sha256" not in sent
    assert sent["text_sha256"] == hashlib.sha256(text.replace(code, "#" * len(code)).encode()).hexdigest()


async def test_a_login_never_asks_the_operator(guarded: Live, operator: Operator) -> None:
    """A login is not a sensitive operation: no operator call, ALLOW."""
    user_id = await enrolled(guarded)
    response = await guarded.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id=user_id, operation=op_pb.Operation(login=op_pb.Login()), context=CONTEXT
        )
    )
    assert response.risk.decision == auth_pb.RISK_DECISION_ALLOW
    assert operator.calls == []


async def test_a_denied_request_repeated_is_journaled_once(
    guarded: Live, operator: Operator, redis_client: aioredis.Redis
) -> None:
    """The same denied request id sent again and again: each answer RISK_DENIED, one denial journaled, and
    nothing written after the first (a caller's retry loop does not grow the user's journal)."""
    user_id = await enrolled(guarded)
    operator.changes[PHONE] = datetime.now(UTC) - timedelta(hours=2)
    request = auth_pb.StartChallengeRequest(
        user_id=user_id, operation=transfer(), context=CONTEXT, request_id="pay-9"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await guarded.auth.StartChallenge(request)
    assert risk_denied(caught.value)["reasons"] == "SIM_SWAP"
    before = await snapshot(redis_client)
    for _ in range(20):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await guarded.auth.StartChallenge(request)
        assert risk_denied(caught.value)["reasons"] == "SIM_SWAP"
    assert await snapshot(redis_client) == before
    assert len(denials_in(await guarded.store.users.user_journal(user_id))) == 1


async def test_a_denied_request_id_sent_for_another_operation_is_refused_not_silently_denied(
    guarded: Live, operator: Operator
) -> None:
    """A request id denied for one transfer, sent again for another: refused as a request id used for another
    operation (as for a request id that opened a challenge), never answered RISK_DENIED without a denial of
    its own in the journal (the second transfer's denial would be missing from the evidence)."""
    user_id = await enrolled(guarded)
    operator.changes[PHONE] = datetime.now(UTC) - timedelta(hours=2)
    first = auth_pb.StartChallengeRequest(
        user_id=user_id, operation=transfer(), context=CONTEXT, request_id="p-1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await guarded.auth.StartChallenge(first)
    assert risk_denied(caught.value)["reasons"] == "SIM_SWAP"
    other = auth_pb.StartChallengeRequest(
        user_id=user_id,
        operation=transfer(amount_minor=4_999_900, iban=FRAUD_A),
        context=CONTEXT,
        request_id="p-1",
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await guarded.auth.StartChallenge(other)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len(denials_in(await guarded.store.users.user_journal(user_id))) == 1


async def test_a_denied_request_repeated_is_counted_once(guarded: Live, operator: Operator) -> None:
    """A caller's retry loop on a denied request id is one attempt (decision 0050): journaled once, and
    counted once in sesame_risk_decisions_total, its reasons and rules too (a retry answered by its first
    answer counts nothing, decision 0043); a new request id is a new attempt, counted."""
    user_id = await enrolled(guarded)
    operator.changes[PHONE] = datetime.now(UTC) - timedelta(hours=2)
    request = auth_pb.StartChallengeRequest(
        user_id=user_id, operation=transfer(), context=CONTEXT, request_id="pay-loop"
    )
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await guarded.auth.StartChallenge(request)
        assert risk_denied(caught.value)["reasons"] == "SIM_SWAP"
    registry = guarded.metrics.registry
    decisions = {"operation": "credit_transfer", "decision": "deny"}
    reasons = {"reason": "SIM_SWAP", "decision": "deny"}
    rules = {"rule": "recent-sim-swap", "decision": "deny"}
    assert await counted(registry, "sesame_risk_decisions_total", decisions) == 1
    assert registry.get_sample_value("sesame_risk_reasons_total", reasons) == 1
    assert registry.get_sample_value("sesame_risk_rules_total", rules) == 1
    with pytest.raises(grpc.aio.AioRpcError):
        await guarded.auth.StartChallenge(
            auth_pb.StartChallengeRequest(
                user_id=user_id, operation=transfer(), context=CONTEXT, request_id="pay-other"
            )
        )
    assert registry.get_sample_value("sesame_risk_decisions_total", decisions) == 2


async def test_a_resend_after_the_sim_was_swapped_is_denied_and_sends_nothing(
    guarded: Live, operator: Operator
) -> None:
    """Found by an outside audit: a transfer started while the SIM was the user's (ALLOW), then the number
    moved to another SIM: ResendChallenge sent the code to the new SIM (the operator's earlier answer was
    kept 5 minutes, and Resend never asked), and it verified. A resend of a sensitive operation asks the
    operator afresh: a change Start's decision did not weigh is RISK_DENIED `SIM_SWAP`, nothing sent; a
    login's resend never asks (decision 0152)."""
    user_id = await enrolled(guarded)
    operator.changes[PHONE] = None  # never swapped
    started = await guarded.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
    )
    assert started.risk.decision == auth_pb.RISK_DECISION_ALLOW
    guarded.clock.advance(timedelta(minutes=1))  # past the resend spacing
    resend = auth_pb.ResendChallengeRequest(challenge_id=started.challenge_id)
    assert (await guarded.auth.ResendChallenge(resend)).delivery_state == auth_pb.DELIVERY_STATE_QUEUED
    await settled(guarded.store)
    sent = guarded.sms_file.read_text(encoding="utf-8").splitlines()
    assert len(sent) == 2  # the code, and its resend while the SIM was still the user's
    operator.changes[PHONE] = datetime.now(UTC)  # the thief has the number moved to his SIM
    guarded.clock.advance(timedelta(minutes=1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await guarded.auth.ResendChallenge(resend)
    assert risk_denied(caught.value)["reasons"] == "SIM_SWAP"
    await settled(guarded.store)
    assert guarded.sms_file.read_text(encoding="utf-8").splitlines() == sent
    login = await guarded.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=op_pb.Operation(login=op_pb.Login()))
    )
    guarded.clock.advance(timedelta(minutes=1))
    await guarded.auth.ResendChallenge(auth_pb.ResendChallengeRequest(challenge_id=login.challenge_id))

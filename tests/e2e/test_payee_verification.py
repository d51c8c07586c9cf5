"""The bank's Verification of Payee answer through the real server (decision 0099): journaled with the
opening, stated in the SMS after the IBAN, a risk signal (a name that does not match HOLDs the transfer, a
close one WARNs), and a value past the enum refused with nothing written."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients import redis_records as rec
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, snapshot, transfer, violations

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _checked(answer: int) -> op_pb.RequestContext:
    context = op_pb.RequestContext()
    context.CopyFrom(CONTEXT)
    context.payee_verification = answer  # type: ignore[assignment]  # an open enum: any int32 goes on the wire
    return context


async def _opened(live: Live, redis_client: aioredis.Redis, challenge_id: str) -> dict[str, str]:
    entries = await redis_client.xrange(live.store.keys.challenge_journal(challenge_id))
    (opened,) = [e for e in map(rec.decoded, (f for _, f in entries)) if e["event"] == "challenge.opened"]
    return opened


@pytest.mark.parametrize(
    "case",
    [
        (op_pb.PAYEE_VERIFICATION_NO_MATCH, auth_pb.RISK_DECISION_HOLD, ["PAYEE_NAME_MISMATCH"], "no_match"),
        (
            op_pb.PAYEE_VERIFICATION_CLOSE_MATCH,
            auth_pb.RISK_DECISION_WARN,
            ["PAYEE_NAME_MISMATCH"],
            "close_match",
        ),
        (op_pb.PAYEE_VERIFICATION_MATCH, auth_pb.RISK_DECISION_ALLOW, [], "match"),
        (op_pb.PAYEE_VERIFICATION_NOT_POSSIBLE, auth_pb.RISK_DECISION_ALLOW, [], "not_possible"),
        (op_pb.PAYEE_VERIFICATION_UNSPECIFIED, auth_pb.RISK_DECISION_ALLOW, [], None),
    ],
)
async def test_the_answer_is_a_signal_and_journaled(
    live: Live, redis_client: aioredis.Redis, case: tuple[int, int, list[str], str | None]
) -> None:
    """A transfer whose payee the bank found not matching is held, a close match warned; the answer is in
    the opening's journal entry and in the SMS (neither when the bank told none; the SMS says nothing of
    a check not possible)."""
    answer, decision, reasons, journaled = case
    user_id = await enrolled(live)
    started = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=_checked(answer))
    )
    assert (started.risk.decision, [r.code for r in started.risk.reasons]) == (decision, reasons)
    assert (await _opened(live, redis_client, started.challenge_id)).get("payee_verification") == journaled
    text, _ = await read_code(live.sms_file, started.challenge_id)
    assert text.count("(IBAN FR76...0189") == 1
    said = {
        "match": ", nom vérifié",
        "close_match": ", nom seulement PROCHE",
        "no_match": ", nom ne correspond PAS",
    }
    assert f"(IBAN FR76...0189{said.get(journaled or '', '')})" in text


async def test_an_answer_past_the_enum_is_refused_and_writes_nothing(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """A number this server does not know (a newer caller's, or a wrong one): INVALID_ARGUMENT naming the
    answers it knows; no challenge, no SMS, nothing in Redis changed."""
    user_id = await enrolled(live)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=_checked(9))
        )
    assert violations(raised.value)["context.payee_verification"].startswith("9 is not one of ")
    assert await snapshot(redis_client) == before


async def test_a_long_payee_name_does_not_take_the_answer_out_of_the_sms(live: Live) -> None:
    """An outside audit (AR1): a payee name of 15 letters or more took ", nom ne correspond PAS" out of a
    large transfer's SMS, and was printed whole in its room. The name gives way to the bank's answer."""
    user_id = await enrolled(live)
    name = "Jean-Baptiste DUPONT DE LA FONTAINE"
    started = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id=user_id,
            operation=transfer(amount_minor=10**15 - 1, name=name),
            context=_checked(op_pb.PAYEE_VERIFICATION_NO_MATCH),
        )
    )
    assert started.risk.decision == auth_pb.RISK_DECISION_HOLD
    text, _ = await read_code(live.sms_file, started.challenge_id)
    assert "(IBAN FR76...0189, nom ne correspond PAS)" in text
    assert name not in text

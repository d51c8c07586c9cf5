"""The velocity and burst signals count the user's open challenges, through the real server (decision 0090).

They once counted verified operations only: six transfers to a payee added two hours before, opened at once
and verified afterwards, were each `WARN NEW_PAYEE` and none `HOLD VELOCITY`, and two beneficiaries opened
at once were each ALLOW where two verified in a row are `WARN PAYEES_BURST`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, verify
from tests.e2e.helpers import started as started_with_code
from tests.e2e.test_risk import FRAUD_A, FRAUD_B, authorised, beneficiary, codes

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def payment(transaction_id: str, amount_minor: int = 99_999) -> op_pb.Operation:
    """A transfer of 999.99 EUR to FRAUD_A, under the new payee's HOLD threshold."""
    return op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=amount_minor),
            payee=op_pb.Payee(name="L J H", iban=FRAUD_A),
            transaction_id=transaction_id,
        )
    )


async def started(live: Live, user_id: str, operation: op_pb.Operation) -> auth_pb.StartChallengeResponse:
    return await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=operation, context=CONTEXT)
    )


async def test_transfers_opened_at_once_are_held_for_velocity(live: Live) -> None:
    """Five transfers within 24 hours are HOLD VELOCITY whether or not the earlier ones were verified yet."""
    user_id = await enrolled(live)
    await authorised(live, user_id, beneficiary(FRAUD_A))
    live.clock.advance(timedelta(hours=2))
    opened = [await started(live, user_id, payment(f"tx-{k}")) for k in range(6)]
    decisions = [response.risk.decision for response in opened]
    assert decisions[:4] == [auth_pb.RISK_DECISION_WARN] * 4
    assert decisions[4:] == [auth_pb.RISK_DECISION_HOLD] * 2
    assert codes(opened[3]) == {"NEW_PAYEE"}  # three open and itself: under both velocity rules
    assert codes(opened[4]) == {"NEW_PAYEE", "VELOCITY"}


async def test_one_operation_opened_again_counts_once_and_a_cancelled_one_not_at_all(live: Live) -> None:
    """A new challenge for the same operation (its SMS was late) is that operation, not another; a cancelled
    challenge and an expired one are no longer in flight."""
    user_id = await enrolled(live)
    await authorised(live, user_id, beneficiary(FRAUD_A))
    live.clock.advance(timedelta(hours=2))
    for _ in range(4):
        await started(live, user_id, payment("tx-same"))
    cancelled = await started(live, user_id, payment("tx-cancelled"))
    await live.auth.CancelChallenge(
        auth_pb.CancelChallengeRequest(challenge_id=cancelled.challenge_id, context=CONTEXT)
    )
    after = await started(live, user_id, payment("tx-other"))
    assert codes(after) == {"NEW_PAYEE"}  # transfers_24h 2, sensitive_ops_1h 1: no VELOCITY
    live.clock.advance(timedelta(minutes=30))  # past the codes' expiry
    for k in range(3):
        await started(live, user_id, payment(f"tx-late-{k}"))
    assert codes(await started(live, user_id, payment("tx-last"))) == {"NEW_PAYEE"}


async def test_beneficiaries_opened_at_once_are_a_burst(live: Live) -> None:
    """Two payees added within one hour: WARN PAYEES_BURST, the second opened before the first is verified."""
    user_id = await enrolled(live)
    first = await started(live, user_id, beneficiary(FRAUD_A))
    second = await started(live, user_id, beneficiary(FRAUD_B, "M K"))
    assert first.risk.decision == auth_pb.RISK_DECISION_ALLOW
    assert (second.risk.decision, codes(second)) == (auth_pb.RISK_DECISION_WARN, {"PAYEES_BURST"})


async def test_start_reads_only_the_challenges_still_open(live: Live, redis_client: aioredis.Redis) -> None:
    """A verified or cancelled challenge leaves its user's pending index in the step that closes it, so a
    Start's risk step reads only what is still open (decision 0093: a user's closed challenges once cost a
    read each until they expired, up to 64 a Start); a verified transfer still counts, as verified."""
    user_id = await enrolled(live)
    await authorised(live, user_id, beneficiary(FRAUD_A))
    live.clock.advance(timedelta(hours=2))
    for k in range(3):
        challenge_id, code = await started_with_code(live, user_id, payment(f"tx-{k}"))
        verified = await verify(live, challenge_id, code, payment(f"tx-{k}"))
        assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED
    cancelled = await started(live, user_id, payment("tx-cancelled"))
    await live.auth.CancelChallenge(
        auth_pb.CancelChallengeRequest(challenge_id=cancelled.challenge_id, context=CONTEXT)
    )
    still = await started(live, user_id, payment("tx-open"))
    indexed = await redis_client.zrange(live.store.keys.user_pending(user_id), 0, -1)
    assert [member.decode() for member in indexed] == [still.challenge_id]
    last = await started(live, user_id, payment("tx-last"))  # three verified, one open, itself: five
    assert codes(last) == {"VELOCITY"}  # the payee paid before: no longer NEW_PAYEE

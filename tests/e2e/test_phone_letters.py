"""A secure number is E.164 as sent: digits after the `+`, nothing that libphonenumber would read as digits.

libphonenumber's parser reads a number the way a person dials it: three letters or more are keypad letters
(`+33612345OOO`, a zero typed as the letter O, dialled `+33612345666`), an extension after `x` or `#` is
dropped, `(0)`, spaces, dots, slashes, zero-width spaces and full-width or Arabic-Indic digits are taken in.
EnrollUser took each such string as the number it parsed to: `+33612345OOO` enrolled `+33612345666`, another
subscriber's line, to which every code of the user would then go. The API says E.164 (docs/api.md, the
protos): anything else is INVALID_ARGUMENT, and nothing is written or sent.
"""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, keys_written, snapshot, started, violations

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NOT_E164 = [
    "+33612345OOO",  # keypad letters: read as +33612345666
    "+33698ABCDEF",  # read as +33698222333
    "+33612345605x1",  # an extension: dropped
    "+33612345605#1",
    "+33(0)612345678",
    "+33 612345678",
    "+33.612345678",
    "+33/612345678",
    "+33\uff1612345678",  # a full-width 6
    "+\u0663\u0663612345678",  # Arabic-Indic 3s
    "+33612345678\u200b",  # a zero-width space
]


@pytest.mark.parametrize("phone", NOT_E164)
async def test_an_enrolment_number_that_is_not_e164_is_refused(
    live: Live, redis_client: aioredis.Redis, phone: str
) -> None:
    """EnrollUser with a number that parses only once read as dialled: INVALID_ARGUMENT on `secure_phone`."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=phone)
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "E.164" in violations(caught.value)["secure_phone"]
    assert await keys_written(redis_client) == []


async def test_a_change_to_a_number_spelt_in_letters_sends_no_code(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """StartChallenge for `change_phone` to `+33698ABCDEF` is INVALID_ARGUMENT, nothing written or sent: it
    sent the old number a code to change to +33698222333; the E.164 number still opens its challenge."""
    user_id = await enrolled(live)
    before = await snapshot(redis_client)
    letters = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone="+33698ABCDEF"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=letters, context=CONTEXT)
        )
    assert "E.164" in violations(caught.value)["operation.change_phone.new_phone"]
    assert await snapshot(redis_client) == before
    assert not live.sms_file.exists() or not live.sms_file.read_text().strip()
    digits = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone="+33698222333"))
    await started(live, user_id, digits)

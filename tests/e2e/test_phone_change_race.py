"""Two changes of the secure number to the same new number at once: one changes it, the other is refused.

ChangeSecurePhone and OverrideSecurePhone refused a change to the secure number itself (PHONE_UNCHANGED) by
reading the user before the change's step, which did not compare the numbers again. Two overrides to the same
number, sent together under their own request ids (two back-office agents, a double click), both read the old
number and both changed it: the second journaled a change from the new number to itself, sent the "your
secure number changed" notice to the new number as if it were the old one, restarted the cooling and counted
a change of number (voiding what the user opened on it meanwhile). The step now compares the numbers too.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.domain.errors import PhoneUnchanged
from sesame.server.domain.lifecycle import ByOverride, PhoneChange, Provenance
from sesame.server.domain.model import RequestContext
from tests.e2e.conftest import Live
from tests.e2e.helpers import PHONE, enrolled, precondition, snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NEW_PHONE = "+33698765432"


async def _override(live: Live, user_id: str, request_id: str) -> enrol_pb.OverrideSecurePhoneResponse | str:
    """OverrideSecurePhone to NEW_PHONE under `request_id`: the answer, or the refusal's precondition type."""
    request = enrol_pb.OverrideSecurePhoneRequest(
        user_id=user_id,
        new_phone=NEW_PHONE,
        operator=f"agent-{request_id}",
        reason="identité vérifiée en agence",
        request_id=request_id,
        actor="back-office",
    )
    try:
        response: enrol_pb.OverrideSecurePhoneResponse = await live.enrol.OverrideSecurePhone(request)
    except grpc.aio.AioRpcError as error:
        return precondition(error)
    return response


async def test_concurrent_overrides_to_one_number_change_it_once(live: Live) -> None:
    """Six overrides of each of five users to the same number at once: one changes it, the others answer
    PHONE_UNCHANGED; the user on the new number with one change of number counted.
    Before, most of them changed it again (a change from NEW_PHONE to NEW_PHONE)."""
    for n in range(5):
        user_id = await enrolled(live, f"user-{n}")
        answers = await asyncio.gather(*(_override(live, user_id, f"o-{n}-{i}") for i in range(6)))
        changed = [a for a in answers if not isinstance(a, str)]
        assert len(changed) == 1, answers
        assert changed[0].old_phone_notified
        assert sorted(a for a in answers if isinstance(a, str)) == ["PHONE_UNCHANGED"] * 5
        user = await live.store.users.get_user(user_id)
        assert (user.secure_phone, user.changes) == (NEW_PHONE, (0, 1))


async def test_the_step_refuses_a_change_to_the_stored_number(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The change's step itself, given a change to the number it reads (the flow's check was passed before
    another change landed): PhoneUnchanged, nothing written."""
    await enrolled(live)
    before = await snapshot(redis_client)
    at = datetime.now(UTC)
    change = PhoneChange(
        "alice",
        PHONE,
        at,
        at,
        ByOverride("agent-7"),
        Provenance("back-office", "lost", "o-1"),
        RequestContext(),
    )
    with pytest.raises(PhoneUnchanged):
        await live.store.users.change_secure_phone(change)
    assert await snapshot(redis_client) == before

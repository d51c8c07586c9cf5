"""A number is shown with its whole country code and its last two digits, whatever the code's length.

The mask kept the first three characters: two digits of a three-digit code (`+352621123456` shown
`+35********56`, a cut code that reads as Spain's +35x or nothing), and after a one-digit code the first
digit of the area code (`+12025550123` shown `+12*******23`). Python (GetUser, StartChallenge, the journal's
enrolment) and Lua (the journal's opening and number change, which Redis writes) masked alike, and wrongly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.destinations import DEFAULT_COUNTRIES
from sesame.server.domain.lifecycle import LifecyclePolicy
from tests.e2e.conftest import Live, live_on
from tests.e2e.helpers import CONTEXT
from tests.fakes.clock import ShiftedClock
from tests.support.wired_server import ServerOptions

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LUXEMBOURG = "+352621123456"
UNITED_STATES = "+12025550123"
COUNTRIES = DEFAULT_COUNTRIES | {"US"}


@pytest.fixture
async def live(redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path) -> AsyncIterator[Live]:
    """conftest's server, with the US among the countries numbers may be in and codes sent to."""
    clock = ShiftedClock()
    policy, lifecycle = ChallengePolicy(countries=COUNTRIES), LifecyclePolicy(countries=COUNTRIES)
    options = ServerOptions(policy=policy, lifecycle=lifecycle, clock=clock)
    async with live_on(keystore, redis_store, tmp_path / "sms.jsonl", clock, options) as running:
        yield running


async def _journaled_numbers(client: aioredis.Redis) -> set[str]:
    """Every `phone` and `old_phone` value of every journal entry in Redis."""
    shown: set[str] = set()
    async for key in client.scan_iter(_type="STREAM"):
        for _, fields in await client.xrange(key):
            shown |= {value.decode() for name, value in fields.items() if name in {b"phone", b"old_phone"}}
    return shown


async def _shown(live: Live) -> tuple[str, str]:
    """The number as GetUser masks it, and as a StartChallenge for a login answers it."""
    user = await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))
    started = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id="alice", operation=op_pb.Operation(login=op_pb.Login()), context=CONTEXT
        )
    )
    return user.user.masked_phone, started.masked_phone


async def test_three_and_one_digit_country_codes_are_shown_whole(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """A Luxembourg number, then a US one by an override: the answers and the journal show `+352*******56`
    and `+1********23`, never `+35...` or `+12...`."""
    await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=LUXEMBOURG)
    )
    assert await _shown(live) == ("+352*******56", "+352*******56")
    await live.enrol.OverrideSecurePhone(
        enrol_pb.OverrideSecurePhoneRequest(
            user_id="alice",
            new_phone=UNITED_STATES,
            operator="agent-7",
            reason="phone lost, identity checked",
            request_id="p-1",
            actor="back-office",
        )
    )
    assert await _shown(live) == ("+1********23", "+1********23")
    assert await _journaled_numbers(redis_client) == {"+352*******56", "+1********23"}

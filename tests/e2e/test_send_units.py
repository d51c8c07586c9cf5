"""A send unit is spent if and only if an SMS is handed to the gateway (M1), and the calling service's and
the global ceilings bound pumping across many users (m9): through the real server, Redis and SoftHSM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_store import RedisState
from sesame.hsm.keys import _on_token, init_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.budgets import BudgetSubject, SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, PHONE, enrolled, transfer
from tests.e2e.test_flows import rich_details
from tests.support.console_sms import written
from tests.support.outbox import settled
from tests.support.wired_server import start_wired

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USER = BudgetSubject.user("alice")
NUMBER = BudgetSubject.phone(PHONE)


def sms_sent(sms_file: Path) -> int:
    """How many code SMS the gateway was handed."""
    return sum(bool(sms["challenge_id"]) for sms in written(sms_file))


async def units(client: aioredis.Redis, subject: BudgetSubject) -> int:
    """The units held in the subject's budget: ZCARD of its sorted set."""
    return int(await client.zcard(Keyspace().send_budget(subject.kind.value, subject.key)))


def start_request(request_id: str = "", amount: int = 125000) -> auth_pb.StartChallengeRequest:
    return auth_pb.StartChallengeRequest(
        user_id="alice", operation=transfer(amount), context=CONTEXT, request_id=request_id
    )


async def refused(call: Callable[[], object]) -> grpc.StatusCode:
    """The status code the awaited call fails with."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call()  # type: ignore[misc]
    return caught.value.code()


async def test_reusing_a_request_id_for_another_operation_spends_no_unit(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Nine starts reusing a request id for another operation are INVALID_ARGUMENT and take no unit."""
    await enrolled(live)
    await live.auth.StartChallenge(start_request("r-1"))
    for amount in range(1, 10):
        code = await refused(lambda a=amount: live.auth.StartChallenge(start_request("r-1", a)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
    await settled(live.store)
    assert sms_sent(live.sms_file) == 1
    assert (await units(redis_client, USER), await units(redis_client, NUMBER)) == (1, 1)


async def test_eight_concurrent_retries_of_one_request_spend_one_unit(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Eight concurrent starts with one request id open one challenge, send one SMS and take one unit."""
    await enrolled(live)
    for run in range(5):
        replies = await asyncio.gather(
            *(live.auth.StartChallenge(start_request(f"retry-{run}")) for _ in range(8))
        )
        assert len({reply.challenge_id for reply in replies}) == 1
    await settled(live.store)
    assert sms_sent(live.sms_file) == 5
    assert (await units(redis_client, USER), await units(redis_client, NUMBER)) == (5, 5)


@pytest.fixture
async def failing_hsm_live(
    make_token: Callable[[str], Pkcs11Config], redis_store: RedisState, tmp_path: Path
) -> AsyncIterator[tuple[Live, Pkcs11Config, str]]:
    """A server on a private token of its own, whose OTP key a test may destroy."""
    config = make_token("units")
    otp = init_keys(config).otp
    keys = Pkcs11KeyStore.open(config)
    sms_file = tmp_path / "sms.jsonl"
    wired = await start_wired(keys, redis_store, sms_file)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{wired.server.port}")
    live = Live(
        channel,
        auth_grpc.AuthenticationServiceStub(channel),
        enrol_grpc.EnrollmentServiceStub(channel),
        sms_file,
        redis_store,
        wired.running.metrics,
    )
    try:
        yield live, config, otp.label
    finally:
        await channel.close()
        await wired.server.stop(0)
        keys.close()


def destroy_key(config: Pkcs11Config, label: str) -> None:
    """Delete the key object from the token (as a damaged or wiped HSM would have it)."""

    def destroy(token: object) -> None:
        token.secret_key(label).destroy()  # type: ignore[attr-defined]
        token.forget_key(label)  # type: ignore[attr-defined]

    _on_token(config, destroy)  # type: ignore[arg-type]


async def test_an_hsm_failure_before_the_sms_spends_no_unit(
    failing_hsm_live: tuple[Live, Pkcs11Config, str], redis_client: aioredis.Redis
) -> None:
    """With the OTP key destroyed in the real SoftHSM, failing starts take no unit: units equal SMS sent."""
    live, config, label = failing_hsm_live
    await enrolled(live)
    await live.auth.StartChallenge(start_request())
    destroy_key(config, label)
    for _ in range(3):
        assert await refused(lambda: live.auth.StartChallenge(start_request())) is not grpc.StatusCode.OK
    await settled(live.store)
    assert sms_sent(live.sms_file) == 1
    assert (await units(redis_client, USER), await units(redis_client, NUMBER)) == (1, 1)


CEILINGS = SendBudget(per_user=100, per_phone=100, per_caller=3, overall=100)


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=CEILINGS)])
async def test_the_callers_ceiling_bounds_pumping_across_users(live: Live) -> None:
    """Across four users on four numbers, the caller's fourth code is RESOURCE_EXHAUSTED on `caller`."""
    for n in range(4):
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=f"u-{n}", client_id="acme", secure_phone=f"+3361200000{n}")
        )
    for n in range(3):
        await live.auth.StartChallenge(auth_pb.StartChallengeRequest(user_id=f"u-{n}", operation=transfer()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="u-3", operation=transfer()))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    quota = error_details_pb2.QuotaFailure()
    assert rich_details(caught.value)[0].Unpack(quota)
    assert [v.subject for v in quota.violations] == ["caller"]
    await settled(live.store)
    assert sms_sent(live.sms_file) == 3


@pytest.mark.parametrize(
    "policy", [ChallengePolicy(send_budget=SendBudget(per_user=100, per_phone=100, overall=2))]
)
async def test_the_global_ceiling_bounds_every_sms(live: Live) -> None:
    """With a global ceiling of two, a third code to a third user is RESOURCE_EXHAUSTED on `global`."""
    for n in range(3):
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=f"u-{n}", client_id="acme", secure_phone=f"+3361200000{n}")
        )
    for n in range(2):
        await live.auth.StartChallenge(auth_pb.StartChallengeRequest(user_id=f"u-{n}", operation=transfer()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="u-2", operation=transfer()))
    quota = error_details_pb2.QuotaFailure()
    assert rich_details(caught.value)[0].Unpack(quota)
    assert [v.subject for v in quota.violations] == ["global"]
    await settled(live.store)
    assert sms_sent(live.sms_file) == 2

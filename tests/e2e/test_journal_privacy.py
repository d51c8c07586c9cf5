"""No journal entry or log line holds a code, a PIN or a full phone number, whatever happened to the user."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.hsm.pkcs11 import Pkcs11Config
from sesame.server.domain.privacy import mask_user
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, IBAN, PHONE, enrolled, started, transfer, verify, wrong
from tests.support.telemetry_fixtures import JsonLogs

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NEW_PHONE = "+33698765432"


async def _every_journal_value(client: aioredis.Redis) -> list[str]:
    """Every field and value of every stream in Redis, as text."""
    values: list[str] = []
    async for key in client.scan_iter(_type="STREAM"):
        for _, fields in await client.xrange(key):
            values += [part.decode() for pair in fields.items() for part in pair]
    return values


async def _a_whole_life(live: Live) -> tuple[str, list[str]]:
    """Wrong and right codes, a resend refusal, a number change, a suspension: (user id, codes sent)."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, wrong(code))
    with pytest.raises(grpc.aio.AioRpcError):  # too soon: refused, and journaled as refused
        await live.auth.ResendChallenge(
            auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
        )
    await verify(live, challenge_id, code)
    _, second_code = await started(live, user_id, transfer(amount_minor=777))
    await live.enrol.OverrideSecurePhone(
        enrol_pb.OverrideSecurePhoneRequest(
            user_id=user_id,
            new_phone=NEW_PHONE,
            operator="ops-1",
            reason="lost phone, identity checked",
            request_id="chg-1",
            actor="ops-1",
        )
    )
    await live.enrol.SuspendUser(
        enrol_pb.SuspendUserRequest(user_id=user_id, request_id="sus-1", actor="ops-1", reason="stolen")
    )
    return user_id, [code, second_code]


async def test_a_whole_life_leaves_no_code_or_number_in_the_journals(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Wrong and right codes, a resend refusal, a number change and a suspension: the journals mask all."""
    _, (code, second_code) = await _a_whole_life(live)
    values = await _every_journal_value(redis_client)
    assert len(values) > 40
    for secret in (code, second_code, PHONE, PHONE[1:], NEW_PHONE, NEW_PHONE[1:]):
        assert not any(secret in value for value in values), secret
    assert any(value == "+33*******32" for value in values)


async def test_a_whole_life_leaves_no_code_pin_or_number_in_the_json_logs(
    live: Live, json_logs: JsonLogs, hsm_config: Pkcs11Config
) -> None:
    """The same life logged as JSON at DEBUG: no code, PIN, phone number, IBAN or whole user id shows."""
    user_id, codes = await _a_whole_life(live)
    lines, text = json_logs.lines(), json_logs.text()
    assert len(lines) > 10
    secrets = [*codes, hsm_config.pin, PHONE, PHONE[1:], NEW_PHONE, NEW_PHONE[1:], IBAN, IBAN[4:], user_id]
    for secret in secrets:
        assert secret not in text, secret
    assert {line["user"] for line in lines if "user" in line} == {mask_user(user_id)}

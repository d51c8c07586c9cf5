"""Each code SMS sent is journaled with the hash of its text, code masked, and its template's version;
each attempt with its forwarded context and the caller (issue 8 item 3, decision 0035), through the real
server and its dispatcher."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from importlib import resources

import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.clients import redis_records as rec
from sesame.server.domain.challenges import ChallengePolicy
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, started, verify, wrong
from tests.support.console_sms import written
from tests.support.outbox import settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TEMPLATES = resources.files("sesame.server") / "sms_templates"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def journal(live: Live, client: aioredis.Redis, challenge_id: str) -> list[dict[str, str]]:
    entries = await client.xrange(live.store.keys.challenge_journal(challenge_id))
    return [rec.decoded(fields) for _, fields in entries]


@pytest.mark.parametrize("policy", [ChallengePolicy(resend_spacing=timedelta(0))])
async def test_each_send_is_journaled_with_its_masked_text_hash_and_template_versions(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The start's SMS and a resend's: two delivery entries, each with the SHA-256 of the text as the console
    gateway received it with the code's digits as `#`, the template `fr/credit_transfer` and the SHA-256 of
    its file and of the warning file; neither the code nor the plain text's hash is in the journal."""
    challenge_id, code = await started(live, await enrolled(live))
    await live.auth.ResendChallenge(
        auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
    )
    await settled(live.store)
    texts = [sms["text"] for sms in written(live.sms_file)]
    assert len(texts) == 2
    sent = [e for e in await journal(live, redis_client, challenge_id) if e["event"] == "challenge.delivery"]
    assert [e["outcome"] for e in sent] == ["sent", "sent"]
    for entry, text in zip(sent, texts, strict=True):
        assert entry["text_sha256"] == sha256(text.replace(code, "#" * len(code)).encode())
        assert (entry["template"], entry["template_sha256"], entry["warning_sha256"]) == (
            "fr/credit_transfer",
            sha256((TEMPLATES / "fr" / "credit_transfer.txt").read_bytes()),
            sha256((TEMPLATES / "fr" / "warning.txt").read_bytes()),
        )
    every_value = {
        value for entry in await journal(live, redis_client, challenge_id) for value in entry.values()
    }
    assert not any(code in value for value in every_value)
    assert {sha256(text.encode()) for text in texts}.isdisjoint(every_value)


async def test_each_attempt_is_journaled_with_its_context(live: Live, redis_client: aioredis.Redis) -> None:
    """A wrong code then the right one: two verification entries, each with ip, device, session, agent."""
    challenge_id, code = await started(live, await enrolled(live))
    await verify(live, challenge_id, wrong(code))
    await verify(live, challenge_id, code)
    attempts = [
        e for e in await journal(live, redis_client, challenge_id) if e["event"] == "challenge.verification"
    ]
    assert [e["outcome"] for e in attempts] == ["wrong_code", "verified"]
    for entry in attempts:
        assert (entry["ip"], entry["device_id"], entry["session_id"], entry["user_agent"]) == (
            CONTEXT.ip,
            CONTEXT.device_id,
            CONTEXT.session_id,
            CONTEXT.user_agent,
        )
        assert "caller" in entry  # the calling service; empty without mTLS (test_first_factor holds it set)

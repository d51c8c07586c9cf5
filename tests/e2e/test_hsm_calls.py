"""HSM calls per RPC, counted where every HSM call funnels (the key store's `_call`), on a real server.

Start costs one HSM call (the MAC of the code; the nonce comes from the OS, docs/decisions/0020); Verify costs
one MAC, and one signature more when it is VERIFIED (the proof, signed after the decision, decision 0026).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify, wrong

pytestmark = pytest.mark.e2e


def hsm_calls(live: Live) -> Counter[str]:
    """How many HSM calls the server has made so far, by call, from its own metrics."""
    counted: Counter[str] = Counter()
    for family in live.metrics.registry.collect():
        for sample in family.samples:
            if (
                sample.name == "sesame_dependency_duration_seconds_count"
                and sample.labels["dependency"] == "hsm"
            ):
                counted[sample.labels["call"]] += int(sample.value)
    return counted


async def warmed(live: Live) -> str:
    """An enrolled user after one full flow, so no key cache is cold when a test starts counting."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, code)
    return user_id


async def test_start_costs_one_mac(live: Live) -> None:
    """StartChallenge makes exactly one HSM call, the MAC of its code."""
    user_id = await warmed(live)
    before = hsm_calls(live)
    await started(live, user_id)
    assert hsm_calls(live) - before == Counter(mac=1)


async def test_a_successful_verify_costs_one_mac_and_one_signature(live: Live) -> None:
    """VerifyChallenge with the right code makes one MAC and one signature (the proof), nothing else."""
    user_id = await warmed(live)
    challenge_id, code = await started(live, user_id)
    before = hsm_calls(live)
    reply = await verify(live, challenge_id, code)
    assert reply.result == auth_pb.VERIFY_RESULT_VERIFIED
    assert hsm_calls(live) - before == Counter(mac=1, sign=1)


async def test_a_wrong_code_costs_one_mac(live: Live) -> None:
    """VerifyChallenge with a wrong code makes one MAC and signs nothing."""
    user_id = await warmed(live)
    challenge_id, code = await started(live, user_id)
    before = hsm_calls(live)
    reply = await verify(live, challenge_id, wrong(code))
    assert reply.result == auth_pb.VERIFY_RESULT_WRONG_CODE
    assert hsm_calls(live) - before == Counter(mac=1)


async def test_a_right_code_refused_signs_nothing(live: Live, redis_client: aioredis.Redis) -> None:
    """A right code that is refused, while its user is blocked or once the challenge is spent, costs one MAC
    and no signature: a proof is signed only after a VERIFIED decision (docs/decisions/0026)."""
    user_id = await warmed(live)
    spent_id, spent_code = await started(live, user_id)
    await verify(live, spent_id, spent_code)
    missed_id, missed_code = await started(live, user_id)
    await redis_client.zrem(live.store.keys.user_pending(user_id), missed_id)  # the block's voiding misses it
    for wrong_codes in (3, 2):  # five wrong codes in a row block the user
        challenge_id, code = await started(live, user_id)
        for _ in range(wrong_codes):
            await verify(live, challenge_id, wrong(code))
    before = hsm_calls(live)
    assert (await verify(live, missed_id, missed_code)).result == auth_pb.VERIFY_RESULT_USER_BLOCKED
    assert (await verify(live, spent_id, spent_code)).result == auth_pb.VERIFY_RESULT_ALREADY_USED
    assert hsm_calls(live) - before == Counter(mac=2)


async def test_get_proof_signs_once_and_then_reads(live: Live) -> None:
    """GetProof after a verification checks the decision's witness (one MAC, decision 0167) and signs the
    journaled claims once, under the key its decision named if published (AV1); asked again, it reads the
    proof kept and checks its signature under the public keys (AT4): no MAC nor signature. The public keys
    are searched for at most once a second (AU2)."""
    user_id = await warmed(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, code)
    before, started_at = hsm_calls(live), time.monotonic()
    await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))
    await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))
    calls = hsm_calls(live) - before
    assert calls - Counter(public_keys=calls["public_keys"]) == Counter(mac=1, sign=1)
    assert calls["public_keys"] <= 1 + time.monotonic() - started_at


async def test_get_proof_and_the_published_keys_search_the_token_at_most_once_a_second(live: Live) -> None:
    """Found from outside (AU2): each GetProof of a kept proof, and each GetProofKeys, searched the token for
    the public halves, under the lock Start's MAC and Verify's signature wait on (Verify's p50 went from 5 ms
    to 400 ms under a flood). They are read at most once a second; the proofs answered are the same."""
    user_id = await warmed(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, code)
    request = auth_pb.GetProofRequest(challenge_id=challenge_id)
    jws = (await live.auth.GetProof(request)).proof
    before, started_at = hsm_calls(live), time.monotonic()
    for _ in range(50):
        assert (await live.auth.GetProof(request)).proof == jws
        assert "sesame-proof-v" in (await live.auth.GetProofKeys(auth_pb.GetProofKeysRequest())).jwks_json
    seconds = time.monotonic() - started_at
    calls = hsm_calls(live) - before
    assert set(calls) <= {"public_keys"}  # no MAC, no signature
    assert calls["public_keys"] <= 1 + seconds

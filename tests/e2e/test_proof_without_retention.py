"""`SESAME_CHALLENGE_RETENTION_SECONDS=0` (documented: 0 keeps a challenge no longer than its code): GetProof
kept the proof it signed with `SET ... PX 0`, which Redis refuses (`invalid expire time`), so every GetProof
until the challenge expired answered UNAVAILABLE "state store unavailable" on a healthy store. Found by an
outside audit. With no retention no proof is kept: GetProof signs the journal's claims again, each time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from tests.e2e.conftest import Live, live_on
from tests.e2e.helpers import enrolled, started, verify
from tests.fakes.clock import ShiftedClock
from tests.support.jws import claims_of
from tests.support.wired_server import ServerOptions

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
async def live(redis_client: aioredis.Redis, keystore: Pkcs11KeyStore, tmp_path: Path) -> AsyncIterator[Live]:
    """conftest's server on a store that keeps no challenge past its expiry."""
    clock = ShiftedClock()
    store = RedisState.on(redis_client, retention=timedelta(0))
    async with live_on(keystore, store, tmp_path / "sms.jsonl", clock, ServerOptions(clock=clock)) as running:
        yield running


async def test_get_proof_answers_the_verified_challenges_claims_without_a_retention(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Verified, then GetProof twice: each answers a proof of the same claims (signed again: no proof is
    kept, nothing written under the proof's key)."""
    challenge_id, code = await started(live, await enrolled(live))
    verified = await verify(live, challenge_id, code)
    assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED
    request = auth_pb.GetProofRequest(challenge_id=challenge_id)
    proofs = [(await live.auth.GetProof(request)).proof for _ in range(2)]
    assert [claims_of(proof) for proof in proofs] == [claims_of(verified.proof)] * 2
    assert await redis_client.exists(live.store.keys.challenge_proof(challenge_id)) == 0

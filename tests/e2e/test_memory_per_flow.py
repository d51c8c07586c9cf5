"""What one Start+Verify flow leaves in Redis, through the real server (issue 6, item 7; docs/benchmarks.md).

Measured as Redis itself counts it: the sum of `MEMORY USAGE <key> SAMPLES 0` over every key, after a
number of flows less before them, divided by the number of flows. That includes what a flow adds to the
keys it shares with others (the user's pending index, the four send budgets) and the key names. The bound
is an upper bound with room for allocator rounding, so that a regression (a copy of the challenge in every
journal entry, a new field per entry) shows and noise does not. It is the issue's 2 KB target: a closed
challenge's journal stream (4.8 KB, most of it the 4 KB Redis preallocates for a new stream) leaves Redis once
the archive holds it, and only its tail stays, as long as the challenge hash (docs/decisions/0037).
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from bench.redis_census import kind_of
from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FLOWS = 40
# Bytes per flow; measured 5.9 KB (6.9 KB before `hash-max-listpack-value 256`); 5.9 KB with the sealed
# journal too (decision 0027: its seals and the feed leave Redis for the archive once sealed); MEASURED now
# that the closed challenges' journals leave Redis once archived (decision 0037).
BOUND = 2048
ROOMY = ChallengePolicy(send_budget=SendBudget(per_user=1000, per_phone=1000))


async def used(client: aioredis.Redis) -> int:
    """The bytes Redis accounts to every key, names included."""
    return sum((await by_kind(client)).values())


async def by_kind(client: aioredis.Redis) -> dict[str, int]:
    """The same, by kind of key (ids and tags left out): where the bytes are."""
    kinds: dict[str, int] = {}
    async for key in client.scan_iter(count=1000):
        name = kind_of(key)
        kinds[name] = kinds.get(name, 0) + int(await client.memory_usage(key, samples=0) or 0)
    return kinds


@pytest.mark.parametrize("policy", [ROOMY])
async def test_a_flow_leaves_at_most_2_kb_in_redis(live: Live, redis_client: aioredis.Redis) -> None:
    """Start, read the code, verify it (proof signed and journaled, sealed, archived): at most 2 KB per flow
    stay in Redis, the journal itself in the archive."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, code)  # the shared keys (index, budgets) exist from here on
    assert live.sealer is not None
    await live.sealer.step()  # as the server's sealer does each second (docs/decisions/0027)
    await live.sealer.step()  # the openings journal's entries, written by the first step's indexing (0042)
    before = await by_kind(redis_client)
    for _ in range(FLOWS):
        challenge_id, code = await started(live, user_id)
        assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    await live.sealer.step()
    await live.sealer.step()  # the openings journal's entries leave the feed too (decision 0042)
    kept = [key async for key in redis_client.scan_iter(match=b"*:ch:*:journal")]
    assert kept == []  # every closed challenge's journal left for the archive
    after = await by_kind(redis_client)
    per_flow = (sum(after.values()) - sum(before.values())) / FLOWS
    for kind in sorted(after):  # where the bytes are (decision 0037 quotes them)
        print(f"  {kind}: {(after[kind] - before.get(kind, 0)) / FLOWS:.0f} B/flow")  # noqa: T201
    print(f"redis bytes per flow: {per_flow:.0f}")  # noqa: T201 (the figure docs/benchmarks.md quotes)
    assert per_flow <= BOUND

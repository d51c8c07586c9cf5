"""A user's bundle is checked against the user's sealed openings journal (decision 0042): a challenge whose
index member was deleted is found anyway, and an openings entry deleted as well shows as a gap in its
numbering: the bundle says it is incomplete and `sesame evidence` exits 1. Through the real server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from sesame.server.evidence_bundle import completeness
from sesame.server.grpc import user_evidence_client
from sesame.server.grpc.user_evidence_client import fetch_user_evidence
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, transfer
from tests.support.evidence_cli import run_evidence

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def _user_bundle(live: Live, user_id: str) -> tuple[int, dict[str, Any], str]:
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    done = await asyncio.to_thread(
        run_evidence, "--user", user_id, "--since", since, "--target", live.address
    )
    return done.returncode, json.loads(done.stdout), done.stderr


async def _three_sealed(live: Live) -> tuple[str, list[str]]:
    """Three transfers of one user, sealed, archived, indexed, and their openings entries sealed in turn."""
    user_id = await enrolled(live)
    opened = [(await started(live, user_id, transfer(name=f"Payee {n}")))[0] for n in range(3)]
    assert live.sealer is not None
    await live.sealer.step()  # the openings: sealed, archived, indexed, journaled in the openings journal
    await live.sealer.step()  # the openings journal's entries: sealed
    return user_id, opened


async def _members(client: aioredis.Redis, key: str) -> dict[str, bytes]:
    return {member.decode().split(" ")[0]: member for member in await client.zrange(key, 0, -1)}


async def test_a_challenge_deleted_from_the_index_is_found_anyway(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Its index member deleted, the first transfer is still in the user's bundle, flagged, each openings
    entry proven by a verified seal."""
    user_id, opened = await _three_sealed(live)
    index = live.store.keys.user_evidence(user_id)
    assert await redis_client.zrem(index, (await _members(redis_client, index))[opened[0]]) == 1
    status, bundle, stderr = await _user_bundle(live, user_id)
    assert status == 0, stderr[-3000:]
    assert [op["challenge_id"] for op in bundle["operations"]] == opened
    completeness = bundle["completeness"]
    assert (completeness["complete"], completeness["broken"]) == (True, [])
    assert (completeness["openings"], completeness["missing_from_index"]) == (3, [opened[0]])
    openings = bundle["openings"]
    assert [e["challenge_id"] for e in openings["entries"]] == opened
    assert all(p is not None for p in openings["inclusion_proofs"])
    assert (bundle["offline_check"]["valid"], bundle["offline_check"]["uncovered"]) == (True, 0)


async def test_an_openings_entry_deleted_too_is_reported(live: Live, redis_client: aioredis.Redis) -> None:
    """The second transfer deleted from the index and from the openings journal: the bundle is incomplete
    (entry 2 is missing), exit 1; the two others are there."""
    user_id, opened = await _three_sealed(live)
    index = live.store.keys.user_evidence(user_id)
    assert await redis_client.zrem(index, (await _members(redis_client, index))[opened[1]]) == 1
    stream = live.store.keys.user_openings(user_id)
    (victim,) = [i for i, f in await redis_client.xrange(stream) if f[b"challenge_id"] == opened[1].encode()]
    assert await redis_client.xdel(stream, victim) == 1
    status, bundle, stderr = await _user_bundle(live, user_id)
    assert status == 1
    assert [op["challenge_id"] for op in bundle["operations"]] == [opened[0], opened[2]]
    assert bundle["completeness"]["complete"] is False
    assert bundle["completeness"]["broken"] == ["openings journal: entry 2 is missing"]
    assert "completeness check failed: openings journal: entry 2 is missing" in stderr


async def test_a_challenge_opened_while_the_pages_are_read_is_left_out_not_broken(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an outside audit: the first page is the selection's snapshot (its openings journal), a later
    page reads the index as it is then; a challenge opened between the two was "found, not in the openings
    journal" and the whole selection broken, at each retry while the user was active. It is left out, and
    said so; the selection is the first page's, complete."""
    user_id, opened = await _three_sealed(live)
    loop = asyncio.get_running_loop()
    late: list[str] = []
    read_page = user_evidence_client._page

    def page_after_an_opening(stub: Any, request: Any) -> Any:
        if not late:  # before the second page: the user opens a fourth, sealed and indexed at once

            async def opening() -> None:
                late.append((await started(live, user_id, transfer(name="Payee 3")))[0])
                assert live.sealer is not None
                await live.sealer.step()

            asyncio.run_coroutine_threadsafe(opening(), loop).result(timeout=30)
        return read_page(stub, request)

    monkeypatch.setattr(user_evidence_client, "PAGE_SIZE", 2)
    monkeypatch.setattr(user_evidence_client, "_page", page_after_an_opening)
    found = await asyncio.to_thread(fetch_user_evidence, live.address, user_id)
    assert len(late) == 1
    assert [m["challenge_id"] for m in found.challenges] == opened
    assert found.opened_while_read == late
    checked = completeness(found.openings, found.challenges, {"since": "", "until": ""})
    assert (checked["complete"], checked["broken"], checked["openings"]) == (True, [], 3)

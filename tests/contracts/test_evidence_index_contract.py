"""The EvidenceIndex and HealthNotes contracts (decision 0036): the fakes and Redis find, trim and read
alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.evidence_index import EvidenceMatch, IndexedOpening
from sesame.server.domain.ports import EvidenceIndex, HealthNotes
from tests.fakes.evidence_index import MemoryEvidenceIndex, MemoryHealthNotes

NOW = datetime.now(UTC).replace(microsecond=0)
RETENTION = timedelta(days=396)


def _opening(user_id: str, challenge_id: str, days_ago: float, tx: str = "") -> IndexedOpening:
    return IndexedOpening(user_id, EvidenceMatch(challenge_id, NOW - timedelta(days=days_ago), tx))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def index(request: pytest.FixtureRequest) -> EvidenceIndex:
    if request.param == "memory":
        return MemoryEvidenceIndex()
    redis_store: RedisState = request.getfixturevalue("redis_store")
    return redis_store.evidence_index()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def notes(request: pytest.FixtureRequest) -> HealthNotes:
    if request.param == "memory":
        return MemoryHealthNotes()
    redis_store: RedisState = request.getfixturevalue("redis_store")
    return redis_store.health_notes()


async def test_challenges_are_found_by_period_and_by_transaction(index: EvidenceIndex) -> None:
    await index.index(
        [_opening("alice", "c1", 40, "tx-1"), _opening("alice", "c2", 30, "tx-2"), _opening("bob", "c3", 30)],
        NOW,
        RETENTION,
    )
    await index.index([_opening("alice", "c2", 30, "tx-2")], NOW, RETENTION)  # again: idempotent
    everything = await index.find("alice", None, None)
    assert [m.challenge_id for m in everything] == ["c1", "c2"]
    assert everything[0] == EvidenceMatch("c1", NOW - timedelta(days=40), "tx-1")
    assert [m.challenge_id for m in await index.find("alice", NOW - timedelta(days=35), NOW)] == ["c2"]
    assert await index.find("alice", None, NOW - timedelta(days=40)) == []  # `until` is excluded
    assert [m.challenge_id for m in await index.find("alice", None, None, "tx-1")] == ["c1"]
    assert await index.find("alice", None, None, "tx-9") == []
    assert await index.find("nobody", None, None) == []


async def test_a_page_is_the_slice_of_the_list_and_membership_is_looked_up(index: EvidenceIndex) -> None:
    """find_page answers find's list sliced (decision 0054), by period too; held names the members kept."""
    await index.index([_opening("alice", f"c{n:02}", 30 - n, f"tx-{n}") for n in range(12)], NOW, RETENTION)
    whole = await index.find("alice", None, None)
    assert [await index.find_page("alice", None, None, n, 5) for n in (0, 5, 10, 15)] == [
        whole[0:5], whole[5:10], whole[10:12], [],
    ]  # fmt: skip
    since = NOW - timedelta(days=25)
    assert await index.find_page("alice", since, NOW, 2, 3) == (await index.find("alice", since, NOW))[2:5]
    lost = EvidenceMatch("gone", NOW, "tx-9")
    assert await index.held("alice", [whole[3], lost, whole[7]]) == {"c03", "c07"}
    assert await index.held("alice", []) == set()


async def test_the_index_keeps_only_the_evidence_retention(index: EvidenceIndex) -> None:
    await index.index([_opening("alice", "old", 400), _opening("alice", "new", 1)], NOW, RETENTION)
    assert [m.challenge_id for m in await index.find("alice", None, None)] == ["new"]


async def test_health_notes_are_read_by_period_with_the_last_before(notes: HealthNotes) -> None:
    # The notes' ids take the real clock: `now` is read here, not when the module was imported (a suite
    # that reached this test more than 15 minutes after importing it lost the 50-minute note).
    now = datetime.now(UTC).replace(microsecond=0)
    for minutes in (50, 40, 10):  # within the hour a note's time may differ from its id's
        at = now - timedelta(minutes=minutes)
        await notes.note(at, "w1", {"key store": True, "state store": minutes != 40}, RETENTION)
    found = await notes.notes(now - timedelta(minutes=30), now)
    assert [fields["at"][:16] for _, fields in found] == [
        (now - timedelta(minutes=m)).isoformat()[:16] for m in (40, 10)
    ]
    assert found[0][1]["state store"] == "down"
    assert {k: v for k, v in found[1][1].items() if k not in {"seq", "prev", "at"}} == {
        "event": "health.note",
        "worker": "w1",
        "key store": "up",
        "state store": "up",
    }
    assert [fields["at"][:16] for _, fields in await notes.notes(None, now - timedelta(minutes=45))] == [
        (now - timedelta(minutes=50)).isoformat()[:16]
    ]

"""GetUserEvidence a page at a time reads that page of the user's evidence index, not the whole index
(decision 0054): a later page asks Redis for its slice (ZRANGEBYSCORE ... LIMIT offset size+1) and reads
neither the rest of the index nor the openings journal; the pages are the slices of the whole list, as
before. Through the real server and Redis (MONITOR shows what each page asked for)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.domain.evidence_index import EvidenceMatch, IndexedOpening
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled
from tests.support.slots import Call, monitored

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

INDEXED = 47
SIZE = 10


async def _indexed(live: Live) -> list[str]:
    """INDEXED challenges of alice in her evidence index and openings journal, a minute apart, as the
    sealer's index step writes them."""
    now = datetime.now(UTC).replace(microsecond=0)
    openings = [
        IndexedOpening("alice", EvidenceMatch(f"c{n:03}", now - timedelta(minutes=INDEXED - n), f"tx-{n}"))
        for n in range(INDEXED)
    ]
    await live.store.evidence_index().index(openings, now, timedelta(days=396))
    return [o.match.challenge_id for o in openings]


def _reads(calls: list[Call]) -> list[list[bytes]]:
    """The reads of alice's index and openings journal among the calls MONITOR saw."""
    return [
        c.command
        for c in calls
        if c.name in {"zrangebyscore", "zrange", "xrange", "zmscore", "zscan"}
        and any(b"evidence:alice" in a or b"openings:alice" in a for a in c.command)
    ]


def _limit(command: list[bytes]) -> list[bytes]:
    """A ZRANGEBYSCORE's LIMIT: its offset and count ([] without one: the whole range)."""
    at = [a.upper() for a in command].index(b"LIMIT") if b"LIMIT" in [a.upper() for a in command] else -1
    return command[at + 1 : at + 3] if at >= 0 else []


async def test_each_page_reads_its_slice_and_the_pages_are_the_list(
    live: Live, redis_server: EmbeddedRedis
) -> None:
    """47 challenges, pages of 10: the pages are the list in order (10, 10, 10, 10, 7) with the tokens a page
    gave before; each later page asked Redis for 11 members at its offset, nothing else of the index or the
    openings journal; the first page looked up the period's openings (one ZMSCORE) besides its slice."""
    await enrolled(live)
    challenge_ids = await _indexed(live)
    evidence = evidence_grpc.EvidenceServiceStub(live.channel)
    pages: list[list[str]] = []
    tokens: list[str] = []
    reads: list[list[list[bytes]]] = []
    token = ""
    while True:
        request = evidence_pb.GetUserEvidenceRequest(user_id="alice", page_size=SIZE, page_token=token)
        async with monitored(redis_server.url) as watched:
            page = await evidence.GetUserEvidence(request)
        pages.append([c.challenge_id for c in page.challenges])
        reads.append(_reads(watched.calls))
        token = page.next_page_token
        tokens.append(token)
        if not token:
            break
    assert pages == [challenge_ids[n : n + SIZE] for n in range(0, INDEXED, SIZE)]
    assert tokens == ["10", "20", "30", "40", ""]
    assert [c[0].lower() for c in reads[0]] == [b"xrange", b"zrangebyscore", b"zmscore"]
    assert _limit(reads[0][1]) == [b"0", b"11"]
    for n, later in enumerate(reads[1:], start=1):
        (only,) = later
        assert only[0].lower() == b"zrangebyscore"
        assert _limit(only) == [str(n * SIZE).encode(), b"11"]


@pytest.mark.parametrize(
    ("since", "until"),
    [
        # fixed time: a query's bound, never written; the last instant, a back-office tool's "no end"
        (None, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        # fixed time: within the clock margin's hour of the last instant
        (None, datetime(9999, 12, 31, 23, 30, tzinfo=UTC)),
        # fixed time: the first instant, and an hour and more before the Unix epoch
        (datetime(1, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 22, tzinfo=UTC)),
        (None, datetime(1, 1, 1, tzinfo=UTC)),  # fixed time: the first instant
    ],
)
async def test_a_period_at_either_end_of_the_timestamps_is_answered(
    live: Live, since: datetime | None, until: datetime
) -> None:
    """Found by an outside audit: `until` within an hour of the last instant of 9999 answered INTERNAL (an
    OverflowError adding the clock's margin), and an hour or more before the epoch UNAVAILABLE "retry later"
    for good (a negative stream id Redis refuses). Both are valid instants: the period's challenges, here all
    of them or none."""
    await enrolled(live)
    challenge_ids = await _indexed(live)
    request = evidence_pb.GetUserEvidenceRequest(user_id="alice", page_size=100)
    request.until.FromDatetime(until)
    if since is not None:
        request.since.FromDatetime(since)
    page = await evidence_grpc.EvidenceServiceStub(live.channel).GetUserEvidence(request)
    expected = challenge_ids if until.year == 9999 else []
    assert [c.challenge_id for c in page.challenges] == expected

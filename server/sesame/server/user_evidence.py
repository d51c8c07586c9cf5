"""What a user's evidence holds beside its challenges (EvidenceService.GetUserEvidence, decision 0036).

The challenges come from the user's evidence index (by period, or by the caller's transaction id), a page at
a time, completed by the user's sealed openings journal (decision 0042: a member lost from the index is
found there, flagged `indexed=False`); each is then read with GetChallengeEvidence. The first page also gives
the user's lifecycle journal (enrolment, number changes, suspensions, blocks, revocation), the openings
journal of the period (with the entries just before and after it) and the health notes of the period, with
the seals that cover those entries (from the archive, then from Redis) and the journal keys' JWK set: the
client checks them, and proves each entry's inclusion, with nothing else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sesame.clients.redis_journal import RedisJournal
from sesame.server import bundle_extent
from sesame.server.domain import proof
from sesame.server.domain.errors import EvidenceBusy, FieldViolation, InvalidRequest, SesameError
from sesame.server.domain.evidence_index import EvidenceMatch, completed, journaled_opening
from sesame.server.domain.journal_seal import Seal, holds_any, id_key, seal_to_dict
from sesame.server.domain.ports import EvidenceIndex, HealthNotes
from sesame.server.domain.proofs import (
    DEFAULT_PAGE_SIZE,
    FIRST_PAGES_AT_ONCE,
    MAX_PAGE_SIZE,
    MAX_SEALED_LEAVES,
)
from sesame.server.journal_archive import JournalArchive
from sesame.server.journal_evidence import JournalKeyStore

# A page token: the next page's decimal offset, in ASCII digits (str.isdigit also takes superscripts, which
# int() refuses, and other scripts' digits, which it reads).
_OFFSET = re.compile(r"[0-9]{1,9}")
_T = TypeVar("_T")
_log = logging.getLogger("sesame.evidence")


@dataclass(frozen=True, slots=True)
class UserQuery:
    """Which of a user's challenges, and which page."""

    user_id: str
    since: datetime | None = None
    until: datetime | None = None
    transaction_id: str = ""
    page_token: str = ""
    page_size: int = 0


@dataclass(frozen=True, slots=True)
class UserEvidence:
    """One page of the challenges found; on the first page, lifecycle, health notes and their seals."""

    challenges: list[EvidenceMatch]
    next_page_token: str
    lifecycle: list[dict[str, str]]
    health: list[dict[str, str]]
    seals_json: str
    openings: list[dict[str, str]] = field(default_factory=list)  # the user's sealed openings of the query


class UserEvidenceReader:
    """Reads a user's evidence: the index, the user's journal, the health notes, their seals."""

    def __init__(  # noqa: PLR0913 (keyword-only: what it reads, and its one bound)
        self,
        *,
        index: EvidenceIndex,
        journal: RedisJournal,
        notes: HealthNotes,
        keys: JournalKeyStore,
        archive: JournalArchive | None,
        max_leaves: int = MAX_SEALED_LEAVES,
        at_once: int = FIRST_PAGES_AT_ONCE,
    ) -> None:
        self._index = index
        self._journal = journal
        self._notes = notes
        self._keys = keys
        self._archive = archive
        self._max_leaves = max_leaves
        self._at_once = at_once
        self._gathering = 0  # first pages being gathered now (one event loop: no lock)
        # Their heavy steps' threads: a first page runs one at a time, and a place stays held until its thread
        # ends, so `at_once` threads are all the pages ever wait for.
        self._threads = concurrent.futures.ThreadPoolExecutor(at_once, thread_name_prefix="user-evidence")

    async def __call__(self, query: UserQuery) -> UserEvidence:
        """See the module. InvalidRequest for a bad period, page size or page token; EvidenceBusy for a first
        page while this worker gathers `at_once` others (decision 0146)."""
        offset, size = _page(query)  # a bad request is refused as such, busy or not
        threads = _Threads(self._threads)
        if query.page_token:  # a later page: a slice of the index, or of one transaction's few challenges
            return await self._read(query, offset, size, threads)
        # A first page gathers the period's seals: up to ~400 MB of a worker's memory at the leaves' bound
        # (decision 0145); several at once would add up to more than a worker has.
        if self._gathering >= self._at_once:
            raise EvidenceBusy
        self._gathering += 1
        try:
            return await self._read(query, offset, size, threads)
        finally:
            # A call given up on (its deadline) stops at its next await, but the thread it was waiting for
            # runs to its end, its memory with it: the place is held until then.
            self._free_after(threads.running)

    def _free_after(self, running: concurrent.futures.Future[Any] | None) -> None:
        if running is None or running.done():
            self._gathering -= 1
            return
        loop = asyncio.get_running_loop()

        def ended(thread: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the worker's loop closed meanwhile: nothing to free
                loop.call_soon_threadsafe(self._thread_ended, thread)

        running.add_done_callback(ended)

    def _thread_ended(self, thread: concurrent.futures.Future[Any]) -> None:
        """The thread of a first page given up on ended: its place is free; a crash in it is logged, as a
        call's is (nobody waits for its answer)."""
        self._gathering -= 1
        error = None if thread.cancelled() else thread.exception()
        if error is not None and not isinstance(error, SesameError):
            _log.error("a user's evidence given up on failed in its thread", exc_info=error)

    async def _read(self, query: UserQuery, offset: int, size: int, threads: _Threads) -> UserEvidence:
        if query.page_token and not query.transaction_id:
            # A later page reads its own slice of the index only (decision 0054); what the index lost, the
            # first page gave.
            indexed = await self._index.find_page(query.user_id, query.since, query.until, offset, size + 1)
            return UserEvidence(indexed[:size], str(offset + size) if len(indexed) > size else "", [], [], "")
        openings_stream = self._journal.keys.user_openings(query.user_id)
        openings = _anchored(await self._journal.stream_entries(openings_stream), query)
        journaled = [
            m
            for _, f in openings
            if _within(f, query)
            and (m := journaled_opening(f)) is not None
            and (not query.transaction_id or m.transaction_id == query.transaction_id)
        ]
        if query.transaction_id:  # one transaction's few challenges: the period's members of it, sliced
            indexed = await self._index.find(query.user_id, query.since, query.until, query.transaction_id)
            found = completed(indexed, journaled)
            page = found[offset : offset + size]
            token = str(offset + size) if offset + size < len(found) else ""
            if query.page_token:
                return UserEvidence(page, token, [], [], "")
        else:
            # The first page: the index's first slice, and every challenge of the period the openings journal
            # names and the index lost (each looked up, the index not read: decision 0054).
            indexed = await self._index.find_page(query.user_id, query.since, query.until, 0, size + 1)
            held = await self._index.held(query.user_id, journaled)
            page = completed(indexed[:size], [m for m in journaled if m.challenge_id not in held])
            token = str(size) if len(indexed) > size else ""
        stream = self._journal.keys.user_journal(query.user_id)
        lifecycle = [
            (i, fields)
            for i, fields in await self._journal.stream_entries(stream)
            if query.until is None or _before(fields.get("at", ""), query.until)
        ]
        since = query.since or (page[0].opened_at if page else None)  # the first page: the earliest found
        health = await self._notes.notes(since, query.until) if since or query.until else []
        seals = await self._covering([i for i, _ in [*lifecycle, *health, *openings]], threads)
        self._bounded(seals)
        head = await self._journal.last_seal()  # read after the seals: no block given is newer
        subject = {
            "user_id": query.user_id,
            "since": query.since.isoformat() if query.since else "",
            "until": query.until.isoformat() if query.until else "",
            "transaction_id": query.transaction_id,
        }
        # The seals of a user with thousands of challenges hold hundreds of thousands of leaves: reading them
        # for the extent and writing them as JSON held the worker's loop 1-2.5 s (decision 0143). In a thread.
        stated = await threads.run(
            _stated,
            {
                "lifecycle": (stream, lifecycle),
                "health": (self._notes.stream, health),
                "openings": (openings_stream, openings),
            },
            seals,
        )
        names = {
            "lifecycle_stream": stream,
            "health_stream": self._notes.stream,
            "openings_stream": openings_stream,
        }
        jwks = proof.jwk_set(await self._keys.journal_public_keys())
        extent = await bundle_extent.signed(self._keys, subject, stated, head.block if head else None)
        given_json = await threads.run(_given_json, names, jwks, seals, extent)
        return UserEvidence(
            page,
            token,
            [fields for _, fields in lifecycle],
            [fields for _, fields in health],
            given_json,
            [fields for _, fields in openings],
        )

    def _bounded(self, seals: Sequence[Seal]) -> None:
        """InvalidRequest when the seals hold more leaves than an answer gives: a longer history would take a
        worker's memory by hundreds of megabytes per call (decision 0145); a shorter period holds fewer. The
        archive stops reading once past the bound: the count is then a part of the whole."""
        if sum(len(seal.leaves) for seal in seals) > self._max_leaves:
            why = (
                f"the period's seals hold more than {self._max_leaves} journal entries, "
                "more than one answer gives: ask a shorter period"
            )
            raise InvalidRequest([FieldViolation("since", why)])

    async def _covering(self, ids: Sequence[str], threads: _Threads) -> list[Seal]:
        """The seals whose range of entry ids holds one of `ids`: the archive's, then those still in Redis."""
        if not ids:
            return []
        keyed = sorted(id_key(i) for i in ids)
        archive = self._archive
        archived = await threads.run(archive.seals_holding, ids, self._max_leaves) if archive else []
        last = archived[-1].block.number if archived else 0
        since = f"{keyed[0][0]}-{keyed[0][1]}"
        newer = [
            seal
            for seal in await self._journal.seals_from(since)
            if seal.block.number > last and holds_any(seal.block, keyed)
        ]
        return [*archived, *newer]


class _Threads:
    """The threads one page runs its heavy steps in (reading the archive, the extent, the JSON), one after
    the other, as asyncio.to_thread runs them (the call's context vars included); `running`: the last one."""

    def __init__(self, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        self._executor = executor
        self.running: concurrent.futures.Future[Any] | None = None

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """`function(*args)` in a thread of the executor."""
        self.running = self._executor.submit(contextvars.copy_context().run, function, *args)
        return await asyncio.wrap_future(self.running)


def _stated(
    streams: Mapping[str, tuple[str, Sequence[tuple[str, dict[str, str]]]]], seals: Sequence[Seal]
) -> dict[str, dict[str, Any]]:
    """What the answer holds of each stream, by the part of the bundle it fills (bundle_extent)."""
    return {
        part: bundle_extent.stated_stream(name, entries, seals) for part, (name, entries) in streams.items()
    }


def _given_json(
    names: Mapping[str, str], jwks: Mapping[str, Any], seals: Sequence[Seal], extent: Mapping[str, Any]
) -> str:
    """The answer's seals_json: the streams' names, the JWK set, the seals with their leaves, the extent."""
    given = {**names, "jwks": jwks, "seals": [seal_to_dict(seal) for seal in seals], "extent": extent}
    return json.dumps(given, separators=(",", ":"))


def _page(query: UserQuery) -> tuple[int, int]:
    violations = []
    if not 0 <= query.page_size <= MAX_PAGE_SIZE:
        violations.append(FieldViolation("page_size", f"must be 0 to {MAX_PAGE_SIZE}"))
    if query.page_token and _OFFSET.fullmatch(query.page_token) is None:
        violations.append(FieldViolation("page_token", "is not a token a page gave"))
    if query.since and query.until and query.until < query.since:
        violations.append(FieldViolation("until", "is before since"))
    if violations:
        raise InvalidRequest(violations)
    return int(query.page_token or 0), query.page_size or DEFAULT_PAGE_SIZE


def _anchored(
    entries: Sequence[tuple[str, dict[str, str]]], query: UserQuery
) -> list[tuple[str, dict[str, str]]]:
    """The openings entries of the query's period with the one before and the one after it, if any: a gap
    at either end of the period then shows in the numbering too."""
    inside = [n for n, (_, fields) in enumerate(entries) if _within(fields, query)]
    if not inside:
        before = [n for n, (_, fields) in enumerate(entries) if query.since and _at(fields) < query.since]
        first = (before[-1] + 1) if before else 0
        return list(entries[max(first - 1, 0) : first + 1])
    return list(entries[max(inside[0] - 1, 0) : inside[-1] + 2])


def _at(fields: Mapping[str, str]) -> datetime:
    try:
        return datetime.fromisoformat(fields.get("at", ""))
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)


def _within(fields: Mapping[str, str], query: UserQuery) -> bool:
    """Whether an openings entry is of the query's period, whatever its transaction (the client checks the
    period's entries are numbered without a gap)."""
    at = _at(fields)
    return (query.since is None or at >= query.since) and (query.until is None or at < query.until)


def _before(at: str, until: datetime) -> bool:
    try:
        return datetime.fromisoformat(at) < until
    except ValueError:
        return True  # an entry without a readable time is shown, not hidden

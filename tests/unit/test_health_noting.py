"""Health notes (decision 0036): journaled when what a worker sees changes, else once an hour; a store that
cannot take the note does not stop the health watcher."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from sesame.server.domain.errors import StoreUnavailable
from sesame.server.health_noting import KEEP_EVERY, NOTE_EVERY, HealthNoter
from tests.fakes.clock import FixedClock
from tests.fakes.evidence_index import MemoryHealthNotes

RETENTION = timedelta(days=396)
UP = {"state store": True, "key store": True, "sesame.SmsGateway": True}


async def test_a_note_on_each_change_and_one_an_hour_otherwise() -> None:
    clock, notes = FixedClock(), MemoryHealthNotes()
    noter = HealthNoter(notes, clock, RETENTION, worker="w1")
    await noter(UP)
    clock.advance(timedelta(seconds=5))
    await noter(UP)  # unchanged: no note
    await noter({**UP, "key store": False})  # the HSM fails: noted at once
    clock.advance(timedelta(seconds=5))
    await noter({**UP, "key store": False})
    await noter(UP)  # back: noted
    clock.advance(NOTE_EVERY)
    await noter(UP)  # an hour without change: noted again
    written = [fields for _, fields in await notes.notes(None, None)]
    assert [n["key store"] for n in written] == ["up", "down", "up", "up"]
    assert {n["worker"] for n in written} == {"w1"}


class _Failing(MemoryHealthNotes):
    async def note(self, at: datetime, worker: str, parts: Mapping[str, bool], retention: timedelta) -> None:
        raise StoreUnavailable("redis down")


async def test_a_note_that_cannot_be_written_is_tried_again_next_round() -> None:
    clock, failing = FixedClock(), _Failing()
    noter = HealthNoter(failing, clock, RETENTION, worker="w1")
    await noter({**UP, "state store": False})  # Redis itself is down: nothing raised
    notes = MemoryHealthNotes()
    noter._notes = notes  # Redis is back
    await noter({**UP, "state store": False})
    assert [fields["state store"] for _, fields in await notes.notes(None, None)] == ["down"]


class _Lost(MemoryHealthNotes):
    """Redis took the note, and its answer was lost (a timeout): the noter sees a failure."""

    async def note(self, at: datetime, worker: str, parts: Mapping[str, bool], retention: timedelta) -> None:
        await super().note(at, worker, parts, retention)
        raise StoreUnavailable("timeout")


async def test_after_an_outage_the_note_of_what_it_saw_then_the_state_now() -> None:
    """Found from outside: back from an outage, the first round found everything up as the last note said
    and wrote nothing, so the outage left no trace (or a `down` whose answer was lost stood for the hour)."""
    clock, notes = FixedClock(), MemoryHealthNotes()
    noter = HealthNoter(notes, clock, RETENTION, worker="w1")
    await noter(UP)
    noter._notes = _Failing()  # Redis away: the rounds see it down, and the key store for one of them
    await noter({**UP, "state store": False})
    await noter({**UP, "state store": False, "key store": False})
    noter._notes = notes
    await noter(UP)
    written = [fields for _, fields in await notes.notes(None, None)]
    assert [(n["state store"], n["key store"]) for n in written] == [
        ("up", "up"),
        ("down", "down"),
        ("up", "up"),
    ]


async def test_a_down_note_whose_answer_was_lost_is_followed_by_up() -> None:
    """The outside audit's case: the `down` reached Redis, its answer did not; back, `up` follows it."""
    clock, lost = FixedClock(), _Lost()
    noter = HealthNoter(lost, clock, RETENTION, worker="w1")
    await noter({**UP, "state store": False})
    back = MemoryHealthNotes()
    noter._notes = back
    await noter(UP)
    await noter(UP)  # known written now: nothing more
    assert [n["state store"] for _, n in await lost.notes(None, None)] == ["down"]
    assert [n["state store"] for _, n in await back.notes(None, None)] == ["down", "up"]


async def test_what_a_stopped_worker_could_not_note_is_noted_by_the_next(tmp_path: Path) -> None:
    """The failed rounds' state outlives the worker in its pending file; the next worker writes it first and
    removes the file once written."""
    pending = tmp_path / "health" / "worker-1.unwritten"
    clock = FixedClock()
    first = HealthNoter(_Failing(), clock, RETENTION, worker="w1")
    first.pending_in(pending)
    await first({**UP, "state store": False})
    assert pending.exists()
    notes = MemoryHealthNotes()
    second = HealthNoter(notes, clock, RETENTION, worker="w2")
    second.pending_in(pending)
    await second(UP)
    assert [n["state store"] for _, n in await notes.notes(None, None)] == ["down", "up"]
    assert not pending.exists()


async def test_a_pending_file_not_recent_or_not_in_form_is_dropped(tmp_path: Path) -> None:
    """Found from outside: a file of a worker number no longer started sealed a `down` at a boot long after,
    and one edited by hand made the note's own fields (`event`, `at`) or read `"false"` as up. Only a
    recent file in the noter's form is taken, and only the parts the health round names are noted."""
    pending = tmp_path / "worker-1@host.unwritten"
    clock = FixedClock()
    now = clock.now().timestamp()
    for kept in (
        {"seen": now - 3700, "parts": {"state store": False}},  # older than NOTE_EVERY
        {"seen": now, "parts": {"state store": "false"}},  # not a boolean
        {"state store": False},  # not the form
    ):
        pending.write_text(json.dumps(kept))
        notes = MemoryHealthNotes()
        noter = HealthNoter(notes, clock, RETENTION, worker="w")
        noter.pending_in(pending)
        await noter(UP)
        assert [n["state store"] for _, n in await notes.notes(None, None)] == ["up"]
        assert not pending.exists()
    pending.write_text(
        json.dumps({"seen": now, "parts": {"event": False, "at": False, "state store": False}})
    )
    notes = MemoryHealthNotes()
    noter = HealthNoter(notes, clock, RETENTION, worker="w")
    noter.pending_in(pending)
    await noter(UP)
    written = [fields for _, fields in await notes.notes(None, None)]
    assert [(n["event"], n["state store"]) for n in written] == [
        ("health.note", "down"),
        ("health.note", "up"),
    ]


async def test_a_pending_file_that_would_crash_a_boot_is_dropped(tmp_path: Path) -> None:
    """Found from outside: a `seen` too large for a float, or brackets nested past the recursion limit,
    crashed every boot of the worker (the file stayed); a link was followed out of var/. Each is dropped."""
    pending = tmp_path / "worker-1@host.unwritten"
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"seen": FixedClock().now().timestamp(), "parts": {"state store": False}}))
    for plant in (
        lambda: pending.write_text('{"seen": 1' + "0" * 400 + ', "parts": {"state store": false}}'),
        lambda: pending.write_text("[" * 100_000),
        lambda: pending.write_text(" " * 10_000),
        lambda: pending.symlink_to(target),
    ):
        plant()
        notes = MemoryHealthNotes()
        noter = HealthNoter(notes, FixedClock(), RETENTION, worker="w")
        noter.pending_in(pending)
        await noter(UP)
        assert [n["state store"] for _, n in await notes.notes(None, None)] == ["up"]
        assert not pending.exists()
        assert not pending.is_symlink()
    assert target.exists()


async def test_a_long_outage_keeps_its_pending_file_recent(tmp_path: Path) -> None:
    """Found from outside: the hour was counted from the first failed round, so that the longer the outage the
    surer it left no note when its worker was restarted in it. The file is kept every KEEP_EVERY while the
    rounds fail, and taken over within the hour of the last."""
    pending = tmp_path / "worker-1@host.unwritten"
    clock = FixedClock()
    first = HealthNoter(_Failing(), clock, RETENTION, worker="w1")
    first.pending_in(pending)
    for _ in range(3 * 6):  # three hours of failing rounds, one every ten minutes
        await first({**UP, "state store": False})
        clock.advance(KEEP_EVERY)
    notes = MemoryHealthNotes()
    second = HealthNoter(notes, clock, RETENTION, worker="w2")
    second.pending_in(pending)
    await second(UP)
    assert [n["state store"] for _, n in await notes.notes(None, None)] == ["down", "up"]


def test_pending_files_no_worker_wrote_for_the_hour_are_swept(tmp_path: Path) -> None:
    own, other, fresh = (tmp_path / f"worker-{n}@host.unwritten" for n in (1, 3, 2))
    for path in (other, fresh):
        path.write_text("{}")
    hour_ago = time.time() - NOTE_EVERY.total_seconds() - 1
    os.utime(other, (hour_ago, hour_ago))
    HealthNoter(MemoryHealthNotes(), FixedClock(), RETENTION, worker="w").pending_in(own)
    assert (other.exists(), fresh.exists()) == (False, True)


async def test_a_fifo_or_a_planted_staged_link_neither_hangs_nor_redirects_the_note(tmp_path: Path) -> None:
    """Found from outside: a FIFO at the pending path hung the worker's boot for good; a link at the staged
    path made the note's write go wherever it led. The FIFO is dropped, the link replaced, its target kept."""
    pending = tmp_path / "worker-1@host.unwritten"
    os.mkfifo(pending)
    noter = HealthNoter(_Failing(), FixedClock(), RETENTION, worker="w")
    noter.pending_in(pending)  # returns: not opened blocking, not a regular file
    assert not pending.exists()
    target = tmp_path / "elsewhere"
    target.write_text("kept")
    pending.with_suffix(".staged").symlink_to(target)
    await noter({**UP, "state store": False})
    assert target.read_text() == "kept"
    assert json.loads(pending.read_text())["parts"]["state store"] is False


async def test_a_stopping_worker_dates_its_pending_file_now(tmp_path: Path) -> None:
    """Found from outside: rewritten every KEEP_EVERY only, the file was up to that much older than the last
    failed round, and taken over 50 minutes after it, not the hour. A worker stopping dates it then."""
    pending = tmp_path / "worker-1@host.unwritten"
    clock = FixedClock()
    noter = HealthNoter(_Failing(), clock, RETENTION, worker="w")
    noter.pending_in(pending)
    await noter({**UP, "state store": False})
    clock.advance(KEEP_EVERY - timedelta(seconds=1))
    await noter({**UP, "state store": False})
    noter.stopped()
    assert json.loads(pending.read_text())["seen"] == clock.now().timestamp()

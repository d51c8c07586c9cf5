"""Health notes, written when what a worker sees changes and at least hourly (decision 0036).

CMF L.133-23 asks the bank to show that an operation was "not affected by a technical deficiency". The
health watcher probes the state store and the HSM every few seconds and watches the SMS gateway; only
transitions were logged, and logs are neither sealed nor kept. Each worker now journals a small note (one
field per dependency, `up` or `down`) when the state it sees changes, and otherwise once an hour, so that the
evidence of any operation shows the last note before it and every change during it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from sesame.server.domain.errors import SesameError
from sesame.server.domain.ports import Clock, HealthNotes

NOTE_EVERY = timedelta(hours=1)  # unchanged: one note an hour per worker (~9,000 a year, ~1 MB archived)

_log = logging.getLogger("sesame.journal")  # a journal write failing; the outage itself is sesame.health's


class HealthNoter:
    """Journals the state each health round found, when it changed or an hour went by."""

    def __init__(self, notes: HealthNotes, clock: Clock, retention: timedelta, worker: str = "") -> None:
        self._notes = notes
        self._clock = clock
        self._retention = retention
        self._worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._last: dict[str, bool] | None = None
        self._at: datetime | None = None
        # What the rounds whose note could not be written saw, each part down if one round saw it down;
        # None while notes are written.
        self._unwritten: dict[str, bool] | None = None
        self._pending: Path | None = None  # where `_unwritten` outlives this process (`pending_in`)
        self._since = 0.0  # when the first of the failed rounds was (unix seconds), for the pending file

    def pending_in(self, path: Path) -> None:
        """Keep what the failed rounds saw in `path` until it is written, and take over what the worker before
        this one left there: an outage across a restart (Redis away, the worker stopped, Redis back, a new
        worker) left no note at all (an outside audit).

        Taken over only when it is what this noter writes (`{"since": unix seconds, "parts": {name: bool}}`)
        and its first failed round is less than NOTE_EVERY old: a file left by a worker number no longer
        started, or by another deployment, sealed a `down` at a boot long after (an audit of this). Its parts
        are noted only as far as the health round names them (`__call__`): a file edited by hand made the
        note's own fields. Anything else is dropped, with a WARNING."""
        self._pending = path
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            kept = None
        since = kept.get("since") if isinstance(kept, dict) else None
        parts = kept.get("parts") if isinstance(kept, dict) else None
        now = self._clock.now().timestamp()
        if (
            isinstance(since, (int, float))
            and not isinstance(since, bool)
            and 0 <= now - since < NOTE_EVERY.total_seconds()
            and isinstance(parts, dict)
            and all(isinstance(works, bool) for works in parts.values())
        ):
            self._unwritten, self._since = {str(name): works for name, works in parts.items()}, float(since)
            return
        _log.warning("%s is not a recent health note of this worker's: dropped", path.name)
        with contextlib.suppress(OSError):
            path.unlink()

    async def __call__(self, parts: Mapping[str, bool]) -> None:
        """Note `parts` (name: works) unless the last note said the same within NOTE_EVERY.

        After notes that could not be written (Redis down, or the write's answer lost), the note of what those
        rounds saw is written first, then `parts`: Redis back, the first round found everything up as the
        last note said, and wrote nothing, so the outage left no trace (or a `down` that reached Redis
        without its answer stood for the hour: an outside audit)."""
        now = self._clock.now()
        if (
            self._unwritten is None
            and dict(parts) == self._last
            and self._at is not None
            and now - self._at < NOTE_EVERY
        ):
            return
        try:
            # Only the parts this round names: what a pending file holds besides is no note's.
            missed = {name: works for name, works in (self._unwritten or {}).items() if name in parts}
            if missed and missed != dict(parts) and not all(missed.values()):
                await self._notes.note(now, self._worker, missed, self._retention)
            await self._notes.note(now, self._worker, parts, self._retention)
        except SesameError as exc:  # the state store itself may be what is down: noted once it is back
            if self._unwritten is None:
                _log.warning("health note not journaled (%s)", type(exc).__name__)
            if self._unwritten is None:
                self._since = now.timestamp()
            seen = self._unwritten or {}
            unwritten = {name: works and seen.get(name, True) for name, works in parts.items()}
            if unwritten != self._unwritten:  # kept on each change only: one write, or one line, per change
                self._keep(unwritten)
            self._unwritten = unwritten
            return
        if self._unwritten is not None:
            self._unwritten = None
            self._keep(None)
        self._last, self._at = dict(parts), now

    def _keep(self, unwritten: dict[str, bool] | None) -> None:
        """`unwritten` in the pending file (replaced whole), or the file gone once the notes are written."""
        if self._pending is None:
            return
        try:
            if unwritten is None:
                self._pending.unlink(missing_ok=True)
                return
            self._pending.parent.mkdir(parents=True, exist_ok=True)
            staged = self._pending.with_suffix(".staged")
            staged.write_text(json.dumps({"since": self._since, "parts": unwritten}), encoding="utf-8")
            staged.replace(self._pending)
        except OSError as exc:
            _log.warning("health note kept nowhere across a restart (%s)", type(exc).__name__)

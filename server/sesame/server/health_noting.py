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
import math
import os
import socket
import stat
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from sesame.server.domain.errors import SesameError
from sesame.server.domain.ports import Clock, HealthNotes

NOTE_EVERY = timedelta(hours=1)  # unchanged: one note an hour per worker (~9,000 a year, ~1 MB archived)
KEEP_EVERY = timedelta(minutes=10)  # the pending file rewritten this often while the rounds go on failing
PENDING_LIMIT = 4096  # bytes of a pending file read at most: the noter's own take ~150

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
        self._kept_at = 0.0  # when the pending file was last written (unix seconds)

    def pending_in(self, path: Path) -> None:
        """Keep what the failed rounds saw in `path` until it is written, and take over what the worker before
        this one left there: an outage across a restart (Redis away, the worker stopped, Redis back, a new
        worker) left no note at all (an outside audit).

        Taken over only when it is what this noter writes (`{"seen": unix seconds, "parts": {name: bool}}`,
        rewritten on each change and every KEEP_EVERY while the rounds fail) and its rounds failed less than
        NOTE_EVERY ago: a file left by a worker number no longer started, or by another deployment, sealed a
        `down` at a boot long after (an audit of this). Its parts are noted only as far as the health round
        names them (`__call__`): a file edited by hand made the note's own fields. Anything else is dropped
        with a WARNING, as is every pending file beside it that no worker wrote for NOTE_EVERY (a worker
        number no longer started, another host's name)."""
        self._pending = path
        _sweep(path)
        try:
            kept = _read_pending(path)
        except _NotInForm:
            recent = False
        else:
            if kept is None:
                return
            recent = 0 <= self._clock.now().timestamp() - kept[0] < NOTE_EVERY.total_seconds()
            if recent:
                self._kept_at, self._unwritten = kept
                return
        _log.warning("%s is not a recent health note of this worker's: dropped", path.name)
        _removed(path)

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
            seen = self._unwritten or {}
            unwritten = {name: works and seen.get(name, True) for name, works in parts.items()}
            # Kept on each change, and every KEEP_EVERY that the rounds go on failing (a worker killed in a
            # long outage leaves a file recent enough to be taken over): one write, or one line, each time.
            if unwritten != self._unwritten or now.timestamp() - self._kept_at >= KEEP_EVERY.total_seconds():
                self._kept_at = now.timestamp()
                self._keep(unwritten)
            self._unwritten = unwritten
            return
        if self._unwritten is not None:
            self._unwritten = None
            self._keep(None)
        self._last, self._at = dict(parts), now

    def stopped(self) -> None:
        """The worker stops: while its rounds fail, its pending file says so until now (rewritten every
        KEEP_EVERY only, it was up to that much older than the last failed round: an audit)."""
        if self._unwritten is not None:
            self._kept_at = self._clock.now().timestamp()
            self._keep(self._unwritten)

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
            staged.unlink(missing_ok=True)
            # Made anew, never through a link planted there (it wrote wherever the link led: an audit).
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with os.fdopen(os.open(staged, flags, 0o600), "w", encoding="utf-8") as file:
                file.write(json.dumps({"seen": self._kept_at, "parts": unwritten}))
            staged.replace(self._pending)
        except OSError as exc:
            _log.warning("health note kept nowhere across a restart (%s)", type(exc).__name__)


class _NotInForm(Exception):
    """A pending file there, not in the noter's form."""


def _read_pending(path: Path) -> tuple[float, dict[str, bool]] | None:
    """A pending file's (seen, parts), None when there is none; _NotInForm for anything else than what the
    noter writes (not followed when a link, PENDING_LIMIT bytes at most: a planted file crashed every boot,
    an audit)."""
    try:
        # Not blocking: a FIFO planted there hung the worker's boot for good (an audit).
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _NotInForm from exc
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise _NotInForm
        with os.fdopen(descriptor, "rb") as file:
            data = file.read(PENDING_LIMIT + 1)
        kept = json.loads(data) if len(data) <= PENDING_LIMIT else None
        seen, parts = kept["seen"], kept["parts"]  # type: ignore[index]  # None: TypeError, caught below
        if not (isinstance(seen, (int, float)) and not isinstance(seen, bool) and math.isfinite(seen)):
            raise _NotInForm
        if not all(isinstance(works, bool) for works in parts.values()):
            raise _NotInForm
        return float(seen), {str(name): works for name, works in parts.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError) as exc:
        raise _NotInForm from exc


def _sweep(path: Path) -> None:
    """Remove the pending files beside `path` that no worker wrote for NOTE_EVERY: nobody takes them over."""
    with contextlib.suppress(OSError):
        for other in [*path.parent.glob("*.unwritten"), *path.parent.glob("*.staged")]:
            with contextlib.suppress(OSError):
                if other != path and time.time() - other.lstat().st_mtime >= NOTE_EVERY.total_seconds():
                    _log.warning("%s is an old health note no worker takes over: dropped", other.name)
                    _removed(other)


def _removed(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        _log.warning("%s could not be removed (%s)", path.name, type(exc).__name__)

"""Keeps a child process of ours alive: the redis-server that `sesame serve` starts when none is configured,
and each worker process (`sesame.server.workers`).

Nothing else would restart it: without this, a crashed or OOM-killed child leaves the service answering
UNAVAILABLE until an operator restarts the whole process. Restarts back off, so a child that cannot start
(a corrupt append-only file, a port taken) costs a log line every `cap` seconds, not a busy loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from sesame.server.domain.errors import SesameError

_log = logging.getLogger("sesame.supervisor")


class Restartable(Protocol):
    """A child that can tell whether it died and start itself again (`EmbeddedRedis`, `WorkerProcess`)."""

    def restart_if_dead(self) -> bool:
        """Start the child again if it died; True if it did. Blocking. SesameError if it cannot."""
        ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before the next try after `failures` failed restarts in a row: doubling, capped."""

    first: float
    cap: float

    def delay(self, failures: int) -> float:
        """`first`, twice that, four times, ... never more than `cap`."""
        return min(self.cap, self.first * 2.0 ** max(0, failures - 1))


class Supervisor:
    """Checks the child every `interval` seconds on a background task and restarts it when it died."""

    def __init__(self, name: str, child: Restartable, *, interval: float, backoff: Backoff) -> None:
        """Supervise `child` (`name` is for the logs); nothing runs before `start()`."""
        self._name = name
        self._child = child
        self._interval = interval
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Supervise in the background until `stop()`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sesame-supervisor-{self._name}")

    async def stop(self) -> None:
        """Cancel the background task and wait for it to end (before the child is stopped). Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # `wait` rather than `await task`: the task's CancelledError is its own, not ours.
            await asyncio.wait([task])

    async def _run(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self._backoff.delay(failures) if failures else self._interval)
            try:
                # A restart waits for the new child to load its data: off the event loop.
                restarted = await asyncio.to_thread(self._child.restart_if_dead)
            except SesameError as exc:
                failures += 1
                _log.warning(
                    "%s could not be restarted (%s, try %d); next try in %.1f s",
                    self._name,
                    type(exc).__name__,
                    failures,
                    self._backoff.delay(failures),
                )
                continue
            if restarted:
                _log.info("%s restarted", self._name)
            failures = 0

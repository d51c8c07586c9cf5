"""Work that runs to its end when its caller gives up: gRPC cancels the servicer when the caller's deadline
passes or it cancels, and a change made of several steps, cut between two of them, leaves what the first did
without what the next owed it (a Start's challenge without its units held, decision 0046; a suspension
without the voiding of the user's pending challenges, decision 0010)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

_log = logging.getLogger("sesame.to_the_end")

T = TypeVar("T")

# The pieces of work whose caller gave up, kept until they end (the event loop keeps only weak references).
_GIVEN_UP: set[asyncio.Task[Any]] = set()


async def to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result; when the caller gives up, `work` still runs to its end, and the cancellation is
    raised to the caller."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            _GIVEN_UP.add(task)
            task.add_done_callback(_ended)
        raise


def _ended(task: asyncio.Task[Any]) -> None:
    _GIVEN_UP.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _log.info("a step whose caller gave up ended in %s", type(task.exception()).__name__)

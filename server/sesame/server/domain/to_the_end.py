"""Work that runs to its end when its caller gives up: gRPC cancels the servicer when the caller's deadline
passes or it cancels, and a change made of several steps, cut between two of them, leaves what the first did
without what the next owed it (a Start's challenge without its units held, decision 0046; a suspension
without the voiding of the user's pending challenges, decision 0010).

Work is not begun once the call's deadline has passed (`answering_by`): its caller was told
DEADLINE_EXCEEDED, and an SMS sent, a unit spent or a code consumed for an answer nobody reads is a second
SMS when the caller tries again without a request id (an outside audit). Begun, it runs to its end.

A deadline is passed `DEADLINE_MARGIN` before it is due: gRPC reads the time left of a call against
`time.time()` and a deadline it set on its own clock, so a deadline passed a moment ago can read a
millisecond or two left, and a Verify sent with `grpc-timeout: 1n` once consumed its code under load for a
caller told DEADLINE_EXCEEDED (a full run). No useful answer is two milliseconds away.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from sesame.server.domain.errors import DeadlinePassed

_log = logging.getLogger("sesame.to_the_end")

T = TypeVar("T")

# The pieces of work whose caller gave up, kept until they end (the event loop keeps only weak references).
_GIVEN_UP: set[asyncio.Task[Any]] = set()
# Work is not begun with less than this left before the deadline (seconds).
DEADLINE_MARGIN = 0.002
# When the call being served must have answered (time.monotonic()); None: no deadline.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("sesame_deadline", default=None)


@contextlib.contextmanager
def answering_by(seconds_left: float | None) -> Iterator[None]:
    """Within the block, the call being served must answer within `seconds_left` (None: no deadline)."""
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # a generator closed in another context (see `calling_as`)
            _DEADLINE.reset(token)


def check_deadline() -> None:
    """DeadlinePassed when the call being served is past its deadline, or within `DEADLINE_MARGIN` of it."""
    deadline = _DEADLINE.get()
    if deadline is not None and time.monotonic() >= deadline - DEADLINE_MARGIN:
        raise DeadlinePassed("the caller's deadline passed before the work began")


async def to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result; when the caller gives up, `work` still runs to its end, and the cancellation is
    raised to the caller. DeadlinePassed, `work` never run, when the call's deadline has passed."""
    try:
        check_deadline()
    except DeadlinePassed:
        work.close()
        raise
    # Begun, it ends: the steps inside it are not refused by the deadline as they begin.
    inside = contextvars.copy_context()
    inside.run(_DEADLINE.set, None)
    task = asyncio.get_running_loop().create_task(work, context=inside)
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

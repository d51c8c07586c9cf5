"""The dispatch loops while the outbox cannot be read: one WARNING a minute for all of them (an outside audit
counted a line a second per dispatcher while Redis refused: 3,600 an hour each)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from sesame.server.dispatch_loop import DispatchLoops, DispatchSettings
from sesame.server.domain.errors import StoreUnavailable
from sesame.server.metrics import Metrics
from tests.fakes.clock import FixedClock


class RefusingOutbox:
    """An outbox whose every read Redis refuses."""

    def __init__(self) -> None:
        self.refused = 0

    async def _refused(self, *_: object) -> Any:
        self.refused += 1
        raise StoreUnavailable("ReadOnlyError")

    reclaim = take = backlog = _refused


async def test_an_unreadable_outbox_is_said_once_for_every_loop(caplog: pytest.LogCaptureFixture) -> None:
    outbox = RefusingOutbox()
    loops = DispatchLoops(
        cast("Any", None),
        cast("Any", outbox),
        Metrics(),
        FixedClock(),
        DispatchSettings(loops=3, stop_grace=0.1),
    )
    with caplog.at_level(logging.WARNING, "sesame.dispatch"):
        loops.start()
        try:
            await asyncio.sleep(2.5)  # every loop tried three times
        finally:
            await loops.stop()
    said = [r.getMessage() for r in caplog.records if "outbox unavailable" in r.getMessage()]
    assert outbox.refused >= 9
    assert said == ["outbox unavailable (ReadOnlyError); trying again every second"]

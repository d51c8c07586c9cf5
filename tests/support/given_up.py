"""A step held where it begins, and its caller giving up there: for the tests of work that runs to its end
(`sesame.server.domain.to_the_end`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


def held(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> tuple[asyncio.Event, asyncio.Event]:
    """`owner.name` made to wait at its start until released: (reached, release)."""
    reached, release = asyncio.Event(), asyncio.Event()
    method = getattr(owner, name)

    async def waiting(*args: object, **kwargs: object) -> object:
        reached.set()
        await release.wait()
        return await method(*args, **kwargs)

    monkeypatch.setattr(owner, name, waiting)
    return reached, release


async def given_up(work: asyncio.Future[Any], reached: asyncio.Event, release: asyncio.Event) -> None:
    """Cancel `work` where it waits on `reached`, release the step, and let the work left run to its end."""
    await reached.wait()
    work.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await work
    for _ in range(50):
        await asyncio.sleep(0)

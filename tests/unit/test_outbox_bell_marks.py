"""The bell of a `sesame serve` worker (decision 0060): no watcher, rung by its own steps, and a sweep of
every shard once per wait. Pure logic: its client points nowhere, and the waits are an hour or nothing."""

from __future__ import annotations

from datetime import timedelta

from sesame.clients.redis_connect import connect
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_outbox_bell import Heard, OutboxBell

EVERY = set(range(16))


def a_bell() -> OutboxBell:
    """A bell on a client that no Redis answers: one that read from it would fail."""
    return OutboxBell(
        connect("unix:///nonexistent/redis.sock", timeout=1.0), Keyspace().outboxes(), Heard.OWN_STEPS
    )


async def test_it_starts_without_a_connection_and_rings_for_what_its_steps_queued() -> None:
    """Starting opens nothing; the first take sweeps every shard, then only what was queued is marked."""
    bell = a_bell()
    await bell.start(timedelta(hours=1))
    assert bell.rung() == EVERY
    assert bell.rung() == set()
    bell.queued(3)
    bell.queued(7)
    assert await bell.wait(timedelta(hours=1))
    assert bell.rung() == {3, 7}
    assert not await bell.wait(timedelta(0))


async def test_a_sweep_falls_due_whatever_marks_came() -> None:
    """With a wait of nothing, every call sweeps: marks never keep a shard from being looked at."""
    bell = a_bell()
    await bell.start(timedelta(0))
    bell.queued(3)
    assert bell.rung() == EVERY
    bell.queued(5)
    assert bell.rung() == EVERY


async def test_a_sweep_asked_for_restarts_the_clock() -> None:
    """`swept` (a wait ended with no mark) gives every shard and puts the next sweep a wait later."""
    bell = a_bell()
    await bell.start(timedelta(hours=1))
    bell.queued(2)
    assert bell.swept() == EVERY
    assert bell.rung() == set()

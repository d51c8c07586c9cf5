"""`sesame sms dead-letters`: the SMS the outbox gave up on, masked, newest first (docs/decisions/0033).

Read from the configured Redis (SESAME_REDIS_URL), or else from the embedded one under SESAME_VAR_DIR:
the running `sesame serve`'s redis-server when there is one, or a redis-server started on its directory
for the time of the read (its append-only file holds the dead letters of the last run).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_server import EmbeddedRedis, url_of_running
from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import ConfigurationError, StoreUnavailable

if TYPE_CHECKING:
    from sesame.server.config import Settings
    from sesame.server.domain.dispatching import DeadLetter

HEADER = ("at", "challenge", "user", "phone", "state", "reason", "failure", "tries", "queued at", "notice")


def dead_letters(settings: Settings, count: int) -> list[str]:
    """The lines `sesame sms dead-letters` prints: a header, then one tab-separated line per dead letter."""
    letters = asyncio.run(_recent(settings, count))
    return ["\t".join(HEADER), *(_line(letter) for letter in letters)]


async def _recent(settings: Settings, count: int) -> list[DeadLetter]:
    async with _redis_url(settings) as url:
        # Another shard count than the data's listed some shards' dead letters only, and said nothing (an
        # outside audit): refused, as `serve` and `dispatch` refuse it.
        state = RedisState.from_url(url, shards=settings.redis_shards)
        try:
            await state.check_layout(record=False)
        finally:
            await state.close()
        outbox = RedisOutbox.from_url(url, shards=settings.redis_shards)
        try:
            return await outbox.dead_letters().recent(count)
        finally:
            await outbox.close()


@contextlib.asynccontextmanager
async def _redis_url(settings: Settings) -> AsyncIterator[str]:
    """The configured Redis, the running server's embedded one, or one started on its directory."""
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    data_dir = settings.var_dir / "redis"
    if not data_dir.is_dir():
        # A fresh redis-server there would answer "no dead letters": true of nothing, and it would leave a
        # var/ behind in whatever directory the command was run from.
        raise ConfigurationError(
            f"no embedded Redis under {data_dir.resolve()}: no `sesame serve` ran with this SESAME_VAR_DIR; "
            "run where the server's settings are, or set SESAME_REDIS_URL"
        )
    embedded = EmbeddedRedis(data_dir)
    try:
        await asyncio.to_thread(embedded.start)
    except StoreUnavailable:
        yield url_of_running(data_dir)  # a `sesame serve` owns it: read from its redis-server
        return
    try:
        yield embedded.url
    finally:
        await asyncio.to_thread(embedded.stop)


def _line(letter: DeadLetter) -> str:
    return "\t".join(
        (
            letter.at.isoformat(timespec="seconds"),
            letter.challenge_id or "-",  # "-" for a notice no challenge asked for (an override's)
            letter.user_id,
            letter.masked_phone,
            letter.state.value,
            letter.reason,
            letter.failure,
            str(letter.tries),
            letter.queued_at.isoformat(timespec="seconds"),
            letter.notice or "-",  # a notice's kind; "-" for a code's SMS
        )
    )

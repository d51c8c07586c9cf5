"""`sesame sms dead-letters`: the SMS the outbox gave up on, masked, newest first (docs/decisions/0033).

Read from the configured Redis (SESAME_REDIS_URL), or else from the embedded one under SESAME_VAR_DIR
(`sesame.server.command_redis`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_store import RedisState
from sesame.server.command_redis import command_redis
from sesame.server.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from sesame.server.config import Settings
    from sesame.server.domain.dispatching import DeadLetter

HEADER = ("at", "challenge", "user", "phone", "state", "reason", "failure", "tries", "queued at", "notice")


def dead_letters(settings: Settings, count: int) -> list[str]:
    """The lines `sesame sms dead-letters` prints: a header, then one tab-separated line per dead letter."""
    with command_redis(settings) as url:
        if url is None:
            # A fresh redis-server there would answer "no dead letters": true of nothing.
            raise ConfigurationError(
                f"no embedded Redis under {(settings.var_dir / 'redis').resolve()}: no `sesame serve` ran "
                "with this SESAME_VAR_DIR; run where the server's settings are, or set SESAME_REDIS_URL"
            )
        letters = asyncio.run(_recent(settings, url, count))
    return ["\t".join(HEADER), *(_line(letter) for letter in letters)]


async def _recent(settings: Settings, url: str, count: int) -> list[DeadLetter]:
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

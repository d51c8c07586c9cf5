"""The Redis a command reads (`sesame keys`, `sesame sms dead-letters`) when it is not a server.

SESAME_REDIS_URL when set; else the embedded one under SESAME_VAR_DIR: the running `sesame serve`'s
redis-server when there is one, or a redis-server started on its directory for the time of the command (its
append-only file holds what the last run left: the dead letters, the key ledger).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sesame.clients.redis_server import EmbeddedRedis, url_of_running
from sesame.server.domain.errors import StoreUnavailable

if TYPE_CHECKING:
    from sesame.server.config import Settings


@contextlib.contextmanager
def command_redis(settings: Settings) -> Iterator[str | None]:
    """The URL of the Redis the settings name, or of the embedded one; None when there is none: no
    SESAME_REDIS_URL, and no `sesame serve` ever ran with this SESAME_VAR_DIR (a redis-server started
    there would make a var/ wherever the command was run, and hold nothing)."""
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    data_dir = settings.var_dir / "redis"
    if not data_dir.is_dir():
        yield None
        return
    embedded = EmbeddedRedis(data_dir)
    try:
        embedded.start()
    except StoreUnavailable:
        yield url_of_running(data_dir)  # a `sesame serve` owns it: read from its redis-server
        return
    try:
        yield embedded.url
    finally:
        embedded.stop()

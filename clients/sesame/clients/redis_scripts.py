"""The Lua scripts of the Redis state store, and where redis-py's errors and damaged records become ours."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Awaitable, Iterator, Sequence
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from opentelemetry import trace
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from sesame.clients import redis_records as rec
from sesame.server.domain.call_meter import UNMETERED, CallMeter
from sesame.server.domain.errors import StoreUnavailable
from sesame.server.domain.model import Challenge, User
from sesame.server.tracing import recording

_INCLUDE = re.compile(r"^--#include (\S+)$", re.MULTILINE)
_tracer = trace.get_tracer("sesame.clients.redis")
JOURNAL_PIECE = "_journal.lua"  # in front of every script: the one way a journal entry is appended
T = TypeVar("T")


class Scripts:
    """Every `lua/*.lua` script, registered once (EVALSHA, loaded again by redis-py when Redis lost it), and
    the store's one funnel to Redis: every script and read goes through `call`, timed to `meter`.

    A file whose name starts with `_` is not a script but a piece that scripts include with a line
    `--#include <file>`: Redis scripts cannot call each other, and a rule written once stays one rule.
    `_journal.lua` is put in front of every script: every journal entry is appended by its `journal_append`
    (numbered, linked to its predecessor, fed to the sealer: docs/decisions/0027).
    """

    def __init__(self, client: aioredis.Redis, meter: CallMeter = UNMETERED) -> None:
        self._client = client
        self._meter = meter
        lua = resources.files("sesame.clients").joinpath("lua")
        pieces = {
            entry.name: entry.read_text(encoding="utf-8")
            for entry in lua.iterdir()
            if entry.name.startswith("_") and entry.name.endswith(".lua")
        }
        self._scripts: dict[str, AsyncScript] = {
            entry.name.removesuffix(".lua"): client.register_script(
                pieces[JOURNAL_PIECE]
                + _INCLUDE.sub(lambda line: pieces[line.group(1)], entry.read_text(encoding="utf-8"))
            )
            for entry in lua.iterdir()
            if entry.name.endswith(".lua") and not entry.name.startswith("_")
        }

    def names(self) -> dict[str, str]:
        """Each script's name by the SHA-1 Redis knows it under (EVALSHA's first argument)."""
        return {script.sha: name for name, script in self._scripts.items()}

    async def run(self, name: str, keys: Sequence[str], args: Sequence[rec.Field]) -> Any:
        """Run one script: one atomic transition on the slot of its keys, in a span named after it.

        The span names the script only: keys and arguments hold user ids, numbers and MACs. None while
        tracing is off: a span that records nothing still cost ~10 µs a call (decision 0049).
        """
        if not recording():
            return await self.call(name, self._evalsha(self._scripts[name], keys, args))
        with (
            _tracer.start_as_current_span(
                f"redis {name}",
                kind=trace.SpanKind.CLIENT,
                attributes={"db.system.name": "redis", "db.operation.name": "EVALSHA", "sesame.script": name},
            ),
        ):
            return await self.call(name, self._evalsha(self._scripts[name], keys, args))

    async def _evalsha(self, script: AsyncScript, keys: Sequence[str], args: Sequence[rec.Field]) -> Any:
        """EVALSHA, and the script loaded again when Redis lost it: what `AsyncScript.__call__` does, without
        its per-call import and its isinstance check against a typing Protocol (~1 % of a worker, 0049)."""
        try:
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            script.sha = await self._client.script_load(script.script)
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)

    async def run_each(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[rec.Field]]]
    ) -> list[Any]:
        """Run one script once per (keys, args), all in one pipeline: one round trip, each call one atomic
        step on the slot of its own keys (a shard each: the sealer's reads of the feeds, the dispatcher's
        takes from the outboxes; decision 0044). A call that failed answers its exception, for the caller."""
        script = self._scripts[name]

        async def piped() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                return await pipe.execute(raise_on_error=False)

        with _tracer.start_as_current_span(
            f"redis {name}",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system.name": "redis", "db.operation.name": "EVALSHA", "sesame.script": name},
        ):
            replies = await self.call(name, piped())
            if any(isinstance(reply, NoScriptError) for reply in replies):  # Redis lost its scripts
                await self.call(name, self._client.script_load(script.script))
                replies = await self.call(name, piped())
        return replies

    async def run_all(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[rec.Field]]]
    ) -> list[Any]:
        """`run_each` where every call must have answered: the first that failed is StoreUnavailable (the
        journals' drops and the openings' index, pipelined: decision 0048)."""
        replies = await self.run_each(name, calls)
        for reply in replies:
            if isinstance(reply, Exception):
                self._meter.failed(name)
                raise StoreUnavailable(type(reply).__name__) from reply
        return replies

    async def call(self, name: str, command: Awaitable[T]) -> T:
        """One round trip to Redis (a script, a read, a pipeline), timed under `name`; redis-py's failures
        become StoreUnavailable, counted as failed (docs/decisions/0026). As `translated`, without its
        generator's cost on every call."""
        start = time.perf_counter()
        try:
            return await command
        except StoreUnavailable:
            self._meter.failed(name)
            raise
        except (RedisError, OSError) as exc:
            self._meter.failed(name)
            raise StoreUnavailable(type(exc).__name__) from exc
        finally:
            self._meter.observe(name, time.perf_counter() - start)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Library and socket failures become StoreUnavailable: nothing of redis-py leaves the store."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(type(exc).__name__) from exc


def stored_user(raw: dict[bytes, bytes]) -> User:
    """The user a hash holds; a damaged record is the store failing, not a missing user."""
    try:
        return rec.user_from_hash(raw)
    except rec.CorruptRecord as exc:
        raise StoreUnavailable("corrupt user record") from exc


def stored_challenge(raw: dict[bytes, bytes]) -> Challenge:
    """The challenge a hash holds; a damaged record is the store failing."""
    try:
        return rec.challenge_from_hash(raw)
    except rec.CorruptRecord as exc:
        raise StoreUnavailable("corrupt challenge record") from exc

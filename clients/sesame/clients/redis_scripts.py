"""The Lua scripts of the Redis state store, and where redis-py's errors and damaged records become ours."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Iterator, Sequence
from importlib import resources
from typing import Any, TypeVar, get_args

from opentelemetry import trace
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from sesame.clients import redis_records as rec
from sesame.clients.redis_connect import RedisClient
from sesame.clients.redis_lane import Command, lane_of
from sesame.server.domain.call_meter import UNMETERED, CallMeter, StoreRead
from sesame.server.domain.errors import ScriptSpansSlots, StoreCorrupt, StoreUnavailable
from sesame.server.domain.model import Challenge, User
from sesame.server.tracing import recording

_INCLUDE = re.compile(r"^--#include (\S+)$", re.MULTILINE)
_tracer = trace.get_tracer("sesame.clients.redis")
_log = logging.getLogger("sesame.clients")
# What a cluster node answers a script whose keys, declared or not, are not all in its slot.
# (redis-py reads a CROSSSLOT reply as ClusterCrossSlotError, "Keys in request don't hash to the same slot").
_OTHER_SLOT = re.compile(r"non local key|hash to the same slot|CROSSSLOT", re.IGNORECASE)
# The code in front of a Redis error reply (MISCONF, BUSY, ERR...): Redis's own word, never a key or value;
# in a pipeline, redis-py puts the command in front ("Command # 1 (EVALSHA ...) of pipeline caused error: "
# and the reply's args, a tuple: "('BUSY ...',)").
_CALLED = re.compile(r"redis\.p?call\('([A-Za-z]+)'")  # the commands a script calls, all by name
_REPLY_CODE = re.compile(r"""(?:^|of pipeline caused error: \(?['"]?)([A-Z]{2,16})(?: |$)""")
JOURNAL_PIECE = "_journal.lua"  # in front of every script: the one way a journal entry is appended
# In front of every script too: a worker's instants made expiries Redis counts on its own clock (0103).
EXPIRY_PIECE = "_expiry.lua"
# The line of _risk_rules.lua where the script Start runs for a rule set holds its program (decision 0076).
PROGRAM_LINE = "local RISK_PROGRAM = {}  -- the program\n"
MOVING_SLOT_PIECE = "_moving_slot.lua"  # in front of that on a cluster: no script on a migrating slot
T = TypeVar("T")


def call_names() -> tuple[str, ...]:
    """Every name the funnel reports a call under: each script's (its `lua/*.lua` file) and each read's
    (`StoreRead`): a closed list, the metrics' zeroed failures at boot (decision 0119)."""
    lua = resources.files("sesame.clients").joinpath("lua")
    scripts = (
        entry.name.removesuffix(".lua")
        for entry in lua.iterdir()
        if entry.name.endswith(".lua") and not entry.name.startswith("_")
    )
    return (*sorted(scripts), *get_args(StoreRead))


class Scripts:
    """Every `lua/*.lua` script, registered once (EVALSHA, loaded again by redis-py when Redis lost it), and
    the store's one funnel to Redis: every script and read goes through `call`, timed to `meter`.

    A file whose name starts with `_` is not a script but a piece that scripts include with a line
    `--#include <file>`: Redis scripts cannot call each other, and a rule written once stays one rule.
    `_journal.lua` is put in front of every script: every journal entry is appended by its `journal_append`
    (numbered, linked to its predecessor, fed to the sealer: docs/decisions/0027).
    """

    def __init__(self, client: RedisClient, meter: CallMeter = UNMETERED) -> None:
        self._client = client
        self._meter = meter
        # On a cluster, a script's keys are checked to share one slot before it is sent (decision 0047).
        self._cluster = client if isinstance(client, RedisCluster) else None
        # On one server, scripts are pipelined on the client's lane, not through its pool (decision 0063).
        self._lane = None if isinstance(client, RedisCluster) else lane_of(client)
        lua = resources.files("sesame.clients").joinpath("lua")
        pieces = {
            entry.name: entry.read_text(encoding="utf-8")
            for entry in lua.iterdir()
            if entry.name.startswith("_") and entry.name.endswith(".lua")
        }
        # Without a shebang Redis runs a script in its compatibility mode, which lets it reach keys of other
        # slots the node happens to serve: a layout that works until a slot migrates. `#!lua` (no flags)
        # makes the node refuse any key outside the script's slot (decision 0047).
        # A script on a migrating slot refuses to start, before any command (`_moving_slot.lua`, 0068).
        # A script whose first line is a shebang of its own (`#!lua flags=allow-oom`: one that runs out of
        # memory, decision 0111) keeps it, in front of everything; on a cluster it stands for the bare one.
        strict = pieces[MOVING_SLOT_PIECE] if self._cluster is not None else ""
        self._texts = {}
        for entry in lua.iterdir():
            if not entry.name.endswith(".lua") or entry.name.startswith("_"):
                continue
            text = entry.read_text(encoding="utf-8")
            shebang, _, rest = text.partition("\n") if text.startswith("#!") else ("", "", text)
            if not shebang and self._cluster is not None:
                shebang = "#!lua"
            self._texts[entry.name.removesuffix(".lua")] = (
                (shebang + "\n" if shebang else "")
                + strict
                + pieces[EXPIRY_PIECE]
                + pieces[JOURNAL_PIECE]
                + _INCLUDE.sub(lambda line: pieces[line.group(1)], rest)
            )
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(text) for name, text in self._texts.items()
        }

        # A script with a risk program in its text, by name and program (decision 0076): a few per process.
        self._programmed: dict[tuple[str, str], AsyncScript] = {}

    def commands(self) -> list[str]:
        """Every Redis command the scripts call, lower case, sorted."""
        return sorted({name.lower() for text in self._texts.values() for name in _CALLED.findall(text)})

    def names(self) -> dict[str, str]:
        """Each script's name by the SHA-1 Redis knows it under (EVALSHA's first argument), the scripts with
        a program in their text that ran so far (`run`'s `program`) too."""
        return {script.sha: name for name, script in self._scripts.items()} | {
            script.sha: name for (name, _), script in self._programmed.items()
        }

    def sha(self, name: str, program: str = "") -> str:
        """The SHA-1 the script `name` runs under (with `program` in its text: `run`'s)."""
        return self._script(name, program).sha

    def _script(self, name: str, program: str) -> AsyncScript:
        """The script `name`, with `program` (risk_program.program) in its text in place of the empty one when
        given: a script of its own (its SHA-1), registered at its first call, loaded by EVALSHA's NOSCRIPT
        like any other. Its constants are compiled once by Redis, not decoded at each call (decision 0076)."""
        if not program:
            return self._scripts[name]
        script = self._programmed.get((name, program))
        if script is None:
            text = self._texts[name]
            if PROGRAM_LINE not in text:
                raise ValueError(f"script {name} holds no risk program")
            script = self._client.register_script(
                text.replace(PROGRAM_LINE, f"local RISK_PROGRAM = {program}\n", 1)
            )
            self._programmed[(name, program)] = script
        return script

    async def run(
        self, name: str, keys: Sequence[str], args: Sequence[rec.Field], *, program: str = ""
    ) -> Any:
        """Run one script: one atomic transition on the slot of its keys, in a span named after it. With
        `program` (risk_program.program), the script with that program in its text (`_script`).

        The span names the script only: keys and arguments hold user ids, numbers and MACs. None while
        tracing is off: a span that records nothing still cost ~10 µs a call (decision 0049). On a Redis
        Cluster, keys in several slots are refused before anything is sent, and a node's refusal of a key
        in another slot is the same ScriptSpansSlots: a layout that does not fit fails loudly, never
        retried (docs/decisions/0047).
        """
        cluster = self._cluster
        if cluster is not None and len({cluster.keyslot(key) for key in keys}) > 1:
            self._meter.failed(name)
            raise _spans_slots(name)
        if not recording():
            return await self._run(name, keys, args, program)
        with _span(name):
            return await self._run(name, keys, args, program)

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[rec.Field], program: str = "") -> Any:
        try:
            return await self.call(name, self._evalsha(self._script(name, program), keys, args))
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, ResponseError) and _OTHER_SLOT.search(str(exc.__cause__)):
                raise _spans_slots(name) from exc
            raise

    async def _evalsha(self, script: AsyncScript, keys: Sequence[str], args: Sequence[rec.Field]) -> Any:
        """EVALSHA, and the script loaded again when Redis lost it: what `AsyncScript.__call__` does, without
        its per-call import and its isinstance check against a typing Protocol (~1 % of a worker, 0049)."""
        lane = self._lane
        if lane is None:
            try:
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                script.sha = await self._client.script_load(script.script)
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        try:
            return await lane.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            script.sha = (await lane.call("SCRIPT", "LOAD", script.script)).decode()
            return await lane.call("EVALSHA", script.sha, len(keys), *keys, *args)

    async def run_each(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[rec.Field]]]
    ) -> list[Any]:
        """Run one script once per (keys, args), all in one pipeline: one round trip, each call one atomic
        step on the slot of its own keys (a shard each: the sealer's reads of the feeds, the dispatcher's
        takes from the outboxes; decision 0044). A call that failed answers its exception, for the caller."""
        script = self._scripts[name]
        cluster = self._cluster
        if cluster is not None and any(len({cluster.keyslot(key) for key in keys}) > 1 for keys, _ in calls):
            self._meter.failed(name)
            raise _spans_slots(name)

        async def piped() -> list[Any]:
            if self._lane is not None:
                return await self._lane.pipeline(
                    [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
                )
            async with self._client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    # Not `pipe.evalsha`, which redis-py's cluster pipeline refuses (for its NOSCRIPT, handled
                    # here): the same command, grouped by node there, one round trip per node.
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                return await pipe.execute(raise_on_error=False)

        with _span(name) if recording() else contextlib.nullcontext():
            replies = await self.call(name, piped())
            if any(isinstance(reply, NoScriptError) for reply in replies):  # Redis lost its scripts
                await self.call(name, self._client.script_load(script.script))
                replies = await self.call(name, piped())
        if any(isinstance(reply, ResponseError) and _OTHER_SLOT.search(str(reply)) for reply in replies):
            raise _spans_slots(name)
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
                raise failure(reply) from reply
        return replies

    async def read_each(self, name: str, commands: Sequence[Command]) -> list[Any]:
        """Plain reads (no script: each command one key's slot) in one round trip, timed under `name`; a
        command that failed is StoreUnavailable. On one server they go on the lane and answer as Redis sent
        them (hiredis's lists: an XRANGE's entries as `[id, [name, value, ...]]`, no redis-py parsing, which
        cost the sealer more than decoding the entries: decision 0071); on a cluster, through redis-py's
        pipeline (grouped by node), which answers its parsed forms (an entry's fields as a dict)."""

        async def piped() -> list[Any]:
            if self._lane is not None:
                return await self._lane.pipeline(commands)
            async with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return await pipe.execute(raise_on_error=False)

        replies = await self.call(name, piped())
        for reply in replies:
            if isinstance(reply, Exception):
                self._meter.failed(name)
                raise failure(reply) from reply
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
        except (RedisError, RedisClusterException, OSError) as exc:
            # RedisClusterException, no RedisError: a cluster client that reached no node (decision 0066).
            self._meter.failed(name)
            raise failure(exc) from exc
        finally:
            self._meter.observe(name, time.perf_counter() - start)


def _spans_slots(name: str) -> ScriptSpansSlots:
    """The refusal of a script whose keys a cluster cannot run together, logged loudly (ERROR)."""
    _log.error("Redis Cluster: script %s touches keys in several hash slots; refused", name)
    return ScriptSpansSlots(name)


def _span(name: str) -> contextlib.AbstractContextManager[trace.Span]:
    """The span of a script call (or of a pipeline of one script), named after the script only: its keys and
    arguments hold user ids, numbers and MACs. Opened only while tracing records (decision 0049)."""
    return _tracer.start_as_current_span(
        f"redis {name}",
        kind=trace.SpanKind.CLIENT,
        attributes={"db.system.name": "redis", "db.operation.name": "EVALSHA", "sesame.script": name},
    )


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Library and socket failures become StoreUnavailable: nothing of redis-py leaves the store."""
    try:
        yield
    except (RedisError, RedisClusterException, OSError) as exc:
        raise failure(exc) from exc


def failure(exc: BaseException) -> StoreUnavailable:
    """What a failure of Redis's is to the store: StoreCorrupt for a step that refused a damaged record (its
    reply names which record, never a value: `CORRUPT user record`, without the script's hash and line that
    Redis 7 adds to it), else StoreUnavailable."""
    if type(exc) is ResponseError and str(exc).startswith("CORRUPT "):
        return StoreCorrupt(str(exc).split(" script:", 1)[0])
    return StoreUnavailable(fault(exc))


def fault(exc: BaseException) -> str:
    """What failed, for StoreUnavailable's text and the one log line of a refused call: redis-py's class,
    and for a bare ResponseError the code Redis put in front of its reply (`ResponseError MISCONF`,
    `ResponseError BUSY`: a class of its own says it already, OutOfMemoryError for OOM). Never the rest of
    the reply, which may quote a script's keys (decision 0062)."""
    name = type(exc).__name__
    if type(exc) is ResponseError and (code := _REPLY_CODE.search(str(exc))):
        return f"{name} {code.group(1)}"
    return name


def stored_user(raw: dict[bytes, bytes]) -> User:
    """The user a hash holds; a damaged record is the store failing, not a missing user."""
    try:
        return rec.user_from_hash(raw)
    except rec.CorruptRecord as exc:
        raise StoreCorrupt("corrupt user record") from exc


def stored_challenge(raw: dict[bytes, bytes]) -> Challenge:
    """The challenge a hash holds; a damaged record is the store failing."""
    try:
        return rec.challenge_from_hash(raw)
    except rec.CorruptRecord as exc:
        raise StoreCorrupt("corrupt challenge record") from exc

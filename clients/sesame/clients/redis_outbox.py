"""`RedisOutbox`: the Outbox port on Redis streams read by one consumer group (docs/decisions/0025, 0044).

Each shard has its outbox stream, beside its users and challenges (one slot per script, decision 0044).
Start's and Resend's scripts append an entry (the challenge id, `send` start or resend, `queued_at`) to the
outbox of the challenge's shard, the first of them creating the stream and the group `dispatchers` (so that
no dispatcher writes a key); a dispatcher reads every shard's stream with XREADGROUP (one blocking reader per
shard, each on its own connection, feeding the dispatcher's queue), claims the entries of dead consumers
with XAUTOCLAIM, and settles each with `record_dispatch.lua`, which records the send on the challenge,
acknowledges and deletes the entry in one step. Deleting settled entries keeps the streams as long as the
backlog, and no longer (bounded memory). The dispatchers block on their own pool, never on the request
path's.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from sesame.clients import redis_records as rec
from sesame.clients.redis_dead_letters import RedisDeadLetters
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_scripts import Scripts, stored_challenge, translated
from sesame.server.domain.dispatching import Backlog, FailedTry, QueuedSms
from sesame.server.domain.errors import ChallengeNotFound, StoreUnavailable
from sesame.server.domain.lifecycle import UserNotice
from sesame.server.domain.model import Challenge, DeliveryState
from sesame.server.domain.ports import Outbox
from sesame.server.domain.sent_text import SentText

GROUP: Final = "dispatchers"
# The dead letters stream is bounded in length and in age (docs/decisions/0033): it is a list for the
# operators to look at, not a store of record (the challenge's journal is).
DEAD_LETTERS_KEPT: Final = 10_000
DEAD_LETTERS_LIFETIME: Final = timedelta(days=7)
READERS_STOP_SECONDS: Final = 2.0


class RedisOutbox:
    """The SMS outbox stream and its dispatchers' consumer group."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "sesame") -> None:
        """Use `client` (which must not decode responses), a client of the outbox's own."""
        self._client = client
        self._keys = Keyspace(prefix)
        self._scripts = Scripts(client)
        self._streams = self._keys.outboxes()
        self._ready: asyncio.Queue[QueuedSms] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []
        self._failure: StoreUnavailable | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "sesame", timeout: float = 5.0) -> RedisOutbox:
        """An outbox on its own connection pool; `timeout` must exceed the longest wait of `take`."""
        client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix=prefix)

    @classmethod
    def beside(cls, client: aioredis.Redis, *, prefix: str = "sesame", timeout: float = 5.0) -> RedisOutbox:
        """An outbox on its own pool to the Redis `client` talks to (its blocking reads hold a connection)."""
        options = {**client.connection_pool.connection_kwargs, "socket_timeout": timeout}
        pool = aioredis.ConnectionPool(connection_class=client.connection_pool.connection_class, **options)
        return cls(aioredis.Redis(connection_pool=pool), prefix=prefix)

    def dead_letters(self) -> RedisDeadLetters:
        """The dead letters this outbox keeps, read on its connection."""
        return RedisDeadLetters(self._client, prefix=self._keys.prefix)

    async def close(self) -> None:
        """Stop the readers, close the client and its connections (a pool given to a client outlives its
        `aclose`). Entries a reader took and no dispatcher settled are claimed again (`reclaim`)."""
        self._closed = True
        for reader in self._readers:
            reader.cancel()
        if self._readers:
            # Bounded: redis-py may turn a cancelled read into a connection error, which the reader outlives
            # until it sees `_closed`.
            await asyncio.wait(self._readers, timeout=READERS_STOP_SECONDS)
        self._readers = []
        with translated():
            await self._client.aclose()
            await self._client.connection_pool.disconnect()

    async def take(self, consumer: str, count: int, wait: timedelta) -> list[QueuedSms]:
        """Entries never given to a consumer (XREADGROUP `>`), from any shard, waiting at most `wait` for the
        first. Each shard's reader blocks on its stream and hands what it read to this queue; before the
        first SMS of a shard is queued there is no stream (the script that queues it creates the stream and
        the group): its reader waits, and finds none."""
        if not self._readers:
            self._readers = [
                asyncio.create_task(self._read_shard(stream, consumer, count, wait))
                for stream in self._streams
            ]
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        if self._ready.empty():
            for queued in await self._read_now(consumer, count):
                self._ready.put_nowait(queued)
        try:
            async with asyncio.timeout(wait.total_seconds()):
                batch = [await self._ready.get()]
        except TimeoutError:
            return []
        while len(batch) < count and not self._ready.empty():
            batch.append(self._ready.get_nowait())
        return batch

    async def _read_now(self, consumer: str, count: int) -> list[QueuedSms]:
        """One read of every shard's stream without blocking (a pipeline of single-key reads): what is there
        already is taken at once, whatever the readers are waiting on."""
        with translated():
            async with self._client.pipeline(transaction=False) as pipe:
                for stream in self._streams:
                    pipe.xreadgroup(GROUP, consumer, {stream: ">"}, count=count)
                replies = await pipe.execute(raise_on_error=False)
        found: list[QueuedSms] = []
        for reply in replies:
            if isinstance(reply, ResponseError) and "NOGROUP" in str(reply):
                continue  # no SMS queued there yet (a reader makes the group again if it was lost)
            if isinstance(reply, Exception):
                raise StoreUnavailable(type(reply).__name__) from reply
            for _, entries in reply or []:
                found += [_queued(entry_id, fields) for entry_id, fields in entries if fields]
        return found

    async def _read_shard(self, stream: str, consumer: str, count: int, wait: timedelta) -> None:
        """One shard's reader: read while the queue has room, note a failure for `take` to raise."""
        block = max(1, wait // rec.MS)
        while not self._closed:
            if self._ready.qsize() >= count:
                await asyncio.sleep(wait.total_seconds() / 10)
                continue
            try:
                with translated():
                    raw = await self._read_or_wait(stream, consumer, count, block, wait)
            except StoreUnavailable as exc:
                if self._closed:
                    return
                self._failure = exc
                await asyncio.sleep(1)
                continue
            for _, entries in raw or []:
                for entry_id, fields in entries:
                    if fields:
                        self._ready.put_nowait(_queued(entry_id, fields))

    async def _read_or_wait(self, stream: str, consumer: str, count: int, block: int, wait: timedelta) -> Any:
        try:
            return await self._read(stream, consumer, count, block)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            if not await self._group_made(stream):
                await asyncio.sleep(wait.total_seconds())
                return []
            return await self._read(stream, consumer, count, block)

    async def reclaim(self, consumer: str, idle: timedelta, count: int) -> list[QueuedSms]:
        """XAUTOCLAIM from the start of each shard's stream: entries pending longer than `idle` with any
        consumer, `count` at most."""
        found: list[QueuedSms] = []
        for stream in self._streams:
            if len(found) >= count:
                break
            with translated():
                try:
                    reply = await self._client.xautoclaim(
                        stream, GROUP, consumer, min_idle_time=idle // rec.MS, start_id="0-0", count=count
                    )
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    continue  # no SMS was ever queued there (or the group was lost: `take` makes it again)
            claimed = cast("list[tuple[bytes, dict[bytes, bytes] | None]]", reply[1])
            # An entry deleted while pending comes back without fields: nothing to send.
            found += [_queued(entry_id, fields) for entry_id, fields in claimed if fields]
        return found

    async def challenge(self, queued: QueuedSms) -> Challenge:
        """HGETALL on the outbox's connection, off the request path's pool. ChallengeNotFound."""
        with translated():
            raw = await self._client.hgetall(self._keys.challenge(queued.challenge_id))
        if not raw:
            raise ChallengeNotFound(queued.challenge_id)
        return stored_challenge(cast("dict[bytes, bytes]", raw))

    async def settle(
        self,
        queued: QueuedSms,
        state: DeliveryState,
        provider_ref: str,
        at: datetime,
        text: SentText | None = None,
    ) -> None:
        """record_dispatch.lua: the send recorded and journaled, the entry acknowledged and deleted."""
        challenge_id = queued.challenge_id
        keys = [
            self._keys.challenge(challenge_id),
            self._keys.challenge_journal(challenge_id),
            self._keys.outbox_of(challenge_id),
        ]
        head = rec.challenge_event("challenge.delivery", challenge_id, at)
        written = [] if text is None else [item for pair in text.journal_fields().items() for item in pair]
        args = [
            GROUP,
            queued.entry_id,
            state.value,
            provider_ref,
            *head,
            "provider_ref",
            provider_ref,
            *written,
        ]
        await self._scripts.run("record_dispatch", keys, args)

    async def settle_notice(self, queued: QueuedSms, user_id: str, notice: UserNotice) -> None:
        """record_notice.lua: the notice in the user's journal (sealed, with its text's hash and template
        version), the entry acknowledged and deleted."""
        keys = [self._keys.user_journal(user_id), self._keys.outbox_of(queued.challenge_id)]
        entry = rec.notice_entry(user_id, notice, "challenge_id", queued.challenge_id)
        await self._scripts.run("record_notice", keys, [GROUP, queued.entry_id, *entry])

    async def fail(self, queued: QueuedSms, failure: str, at: datetime, allowed: int) -> FailedTry:
        """record_failed_try.lua: another try later, or the dead letter, in one step."""
        challenge_id = queued.challenge_id
        keys = [
            self._keys.challenge(challenge_id),
            self._keys.challenge_journal(challenge_id),
            self._keys.outbox_of(challenge_id),
            self._keys.dead_letters_of(challenge_id),
        ]
        head = rec.challenge_event("challenge.dead_letter", challenge_id, at)[2:]  # the script names it
        args = [
            GROUP,
            queued.entry_id,
            failure,
            allowed,
            rec.to_ms(at),
            DEAD_LETTERS_KEPT,
            DEAD_LETTERS_LIFETIME // rec.MS,
            rec.to_ms(queued.queued_at),
            *head,
        ]
        reply = await self._scripts.run("record_failed_try", keys, args)
        if int(reply[0]) == 0:
            return FailedTry(int(reply[1]))
        return FailedTry(int(reply[1]), reply[2].decode())

    async def backlog(self) -> Backlog:
        """XLEN and the first entry of every shard's stream, in one pipeline (single-key commands)."""
        with translated():
            async with self._client.pipeline(transaction=False) as pipe:
                for stream in self._streams:
                    pipe.xlen(stream)
                    pipe.xrange(stream, count=1)
                replies = await pipe.execute()
        depth = sum(int(n) for n in replies[::2])
        firsts = [_queued(*first[0]).queued_at for first in replies[1::2] if first]
        return Backlog(depth, min(firsts) if firsts else None)

    async def _read(self, stream: str, consumer: str, count: int, block: int) -> Any:
        return await self._client.xreadgroup(GROUP, consumer, {stream: ">"}, count=count, block=block)

    async def _group_made(self, stream: str) -> bool:
        """Make the group again on a stream that lost it (True); False when there is no stream yet."""
        try:
            await self._client.xgroup_create(stream, GROUP, id="0")
        except ResponseError as exc:
            return "BUSYGROUP" in str(exc)  # made by another dispatcher meanwhile; else no stream
        return True


def _queued(entry_id: bytes, fields: dict[bytes, bytes]) -> QueuedSms:
    until = int(fields.get(b"until", b"0"))
    return QueuedSms(
        entry_id=entry_id.decode(),
        challenge_id=fields[b"challenge_id"].decode(),
        queued_at=rec.from_ms(int(fields[b"queued_at"])),
        notice=fields.get(b"notice", b"").decode(),
        until=rec.from_ms(until) if until else None,
    )


_: type[Outbox] = RedisOutbox

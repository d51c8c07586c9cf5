"""`RedisOutbox`: the Outbox port on Redis streams read by one consumer group (docs/decisions/0025, 0044).

Each shard has its outbox stream, beside its users and challenges (one slot per script, decision 0044).
Start's and Resend's scripts append an entry (the challenge id, `send` start or resend, `queued_at`) to the
outbox of the challenge's shard (a notice to the outbox of its user's), the first of them creating the stream
and the group `dispatchers` (so that no dispatcher writes a key); a dispatcher takes entries with their
challenges by `take_outbox.lua` (XREADGROUP, or XAUTOCLAIM for the entries of dead consumers), one call per
shard, the shards' calls in one pipeline; it waits for new entries on the bell (`redis_outbox_bell`: rung by
this process's own steps, or one blocking XREAD per shard that claims nothing), and takes from the shards it
rang for. It settles each entry
with `record_dispatch.lua` (a notice `record_notice.lua`), which records the send on the challenge,
acknowledges and deletes the entry in one step. Deleting settled entries keeps the streams as long as the
backlog, and no longer (bounded memory). The dispatchers block on their own pool, never on the request
path's.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from sesame.clients import redis_records as rec
from sesame.clients.redis_connect import RedisClient, beside, connect
from sesame.clients.redis_dead_letters import RedisDeadLetters
from sesame.clients.redis_keys import SHARDS, Keyspace
from sesame.clients.redis_lane import close_lane
from sesame.clients.redis_outbox_bell import Heard, OutboxBell
from sesame.clients.redis_outbox_nudge import OutboxNudge
from sesame.clients.redis_scripts import Scripts, fault, stored_challenge, translated
from sesame.clients.redis_send_units import RedisSendUnits
from sesame.clients.sms_reference import smsc_message_id
from sesame.server.domain.dispatching import Backlog, FailedTry, NoticeAddressee, NoticeFailure, QueuedSms
from sesame.server.domain.errors import ChallengeNotFound, StoreUnavailable
from sesame.server.domain.lifecycle import UserNotice
from sesame.server.domain.model import Challenge, DeliveryState
from sesame.server.domain.ports import Outbox
from sesame.server.domain.privacy import mask_phone
from sesame.server.domain.sent_text import SentText

GROUP: Final = "dispatchers"
# The dead letters stream is bounded in length and in age (docs/decisions/0033): it is a list for the
# operators to look at, not a store of record (the challenge's journal is).
DEAD_LETTERS_KEPT: Final = 10_000
DEAD_LETTERS_LIFETIME: Final = timedelta(days=7)
# How long a notice's settled attempt is remembered, for its record asked again (decision 0056): far longer
# than a dispatcher asks again (half the claim idle time), short enough to leave nothing for good.
NOTICE_ATTEMPTS_KEPT: Final = timedelta(days=1)


class RedisOutbox:
    """The SMS outbox streams of every shard and their dispatchers' consumer group."""

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "sesame",
        shards: int = SHARDS,
        heard: Heard = Heard.WATCHING,
    ) -> None:
        """Use `client` (which must not decode responses), a client of the outbox's own; `shards` outboxes,
        whose new entries the dispatchers hear of as `heard` says (decision 0060)."""
        self._client = client
        self._keys = Keyspace(prefix, shards)
        self._scripts = Scripts(client)
        self._streams = self._keys.outboxes()
        self._bell = OutboxBell(client, self._streams, heard)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "sesame", shards: int = SHARDS, timeout: float = 5.0
    ) -> RedisOutbox:
        """An outbox on its own connection pool; `timeout` must exceed the longest wait of `take`."""
        client = connect(url, timeout=timeout)
        return cls(client, prefix=prefix, shards=shards)

    @classmethod
    def beside(
        cls,
        client: RedisClient,
        *,
        prefix: str = "sesame",
        shards: int = SHARDS,
        timeout: float = 5.0,
        heard: Heard = Heard.WATCHING,
    ) -> RedisOutbox:
        """An outbox on its own pool to the Redis `client` talks to (its blocking reads hold a connection)."""
        return cls(beside(client, timeout=timeout), prefix=prefix, shards=shards, heard=heard)

    def nudge(self) -> OutboxNudge:
        """What this process's steps tell of the shard they queued in: the bell's mark (decision 0060)."""
        return self._bell

    def send_units(self) -> RedisSendUnits:
        """The send units the dispatchers spend before handing an SMS over (decision 0046), on this outbox's
        connections: off the request path's pool, as the dispatchers' other reads."""
        return RedisSendUnits(self._client, self._keys, self._scripts)

    def dead_letters(self) -> RedisDeadLetters:
        """The dead letters this outbox keeps, read on its connection."""
        return RedisDeadLetters(self._client, prefix=self._keys.prefix, shards=self._keys.shards)

    async def close(self) -> None:
        """Stop the bell's watchers, close the client and its connections (a pool given to a client outlives
        its `aclose`)."""
        await self._bell.close()
        with translated():
            await close_lane(self._client)
            await self._client.aclose()
            if not isinstance(self._client, RedisCluster):  # a cluster client closes its nodes' pools
                await self._client.connection_pool.disconnect()

    async def take(self, consumer: str, count: int, wait: timedelta) -> list[QueuedSms]:
        """take_outbox.lua on the shards the bell rang for (every shard at the first take), entries never
        given to a consumer, each with its challenge, in one round trip (decision 0040); when there are none,
        wait at most `wait` for the bell, and take from the shards it rang for, or from every shard when it
        did not ring (what was queued just now, before its watcher heard it: the bell only hastens a take,
        no entry waits on it); a bell without watchers sweeps every shard once a wait anyway (decision 0060).
        Before a shard's first SMS is queued it has no stream (the script that queues it creates the stream
        and the group)."""
        await self._bell.start(wait)
        taken = await self._take_from(self._bell.rung(), consumer, count, "")
        if taken:
            return taken
        rang = await self._bell.wait(wait)
        shards = self._bell.rung() if rang else self._bell.swept()
        return await self._take_from(shards, consumer, count, "")

    async def reclaim(self, consumer: str, idle: timedelta, count: int) -> list[QueuedSms]:
        """take_outbox.lua with XAUTOCLAIM from the start of every shard's stream: entries pending longer
        than `idle` with any consumer, each with its challenge; none in a shard before its first SMS was
        queued (or once its group was lost: `take` makes it again)."""
        return await self._take_from(set(range(len(self._streams))), consumer, count, str(idle // rec.MS))

    async def _take_from(self, shards: set[int], consumer: str, count: int, idle: str) -> list[QueuedSms]:
        """take_outbox.lua on `shards`, one call per shard in one pipeline: idle entries `count` from each (a
        dead dispatcher's, rare); new ones `count` shared among the shards, then what is left of it among
        those that gave all they were asked, until `count` or none is full (one round trip each time). A
        shard still full may hold more: it is marked again; one whose stream lost its group gets it again
        (and is marked). A shard that refused is marked too; StoreUnavailable only when none gave any."""
        taken: list[QueuedSms] = []
        refused: dict[int, StoreUnavailable] = {}
        while shards and len(taken) < count:
            order = sorted(shards)
            each = count if idle else max(1, -(-(count - len(taken)) // len(order)))
            # Now, for what take_outbox.lua withholds (decision 0054): its dead letter's and journal's time.
            now = datetime.now(UTC)
            args: list[rec.Field] = [
                GROUP, consumer, each, idle, rec.to_ms(now), rec.iso(now), DEAD_LETTERS_KEPT,
                DEAD_LETTERS_LIFETIME // rec.MS,
            ]  # fmt: skip
            replies = await self._scripts.run_each("take_outbox", [([self._streams[n]], args) for n in order])
            shards = set()
            for shard, reply in zip(order, replies, strict=True):
                try:
                    found = await self._found(shard, reply, consumer, now)
                except StoreUnavailable as exc:
                    # One shard refused (its node away, its slot migrating: decision 0068); the entries the
                    # others gave in the same round trip are handed out all the same, not left pending.
                    refused[shard] = exc
                    continue
                if len(found) >= each:
                    shards.add(shard)
                taken += found
            if idle:
                break
        self._bell.mark(shards | refused.keys())  # a refused shard is tried again first
        if refused and not taken:
            raise next(iter(refused.values()))
        return taken

    async def _found(self, shard: int, reply: object, consumer: str, now: datetime) -> list[QueuedSms]:
        """The entries one take_outbox.lua call gave; none when its stream lost its group, which is made
        again and the shard marked."""
        if isinstance(reply, Exception):
            raise StoreUnavailable(fault(reply)) from reply
        answer = cast("list[Any]", reply)
        if answer[0] == b"nogroup":
            with translated():
                if await self._group_made(self._streams[shard]):
                    self._bell.mark({shard})
            return []
        # Each hand-out its attempt: the record of its send is recognised when asked again (decision 0056).
        return [
            _queued(answer[i], _pairs(answer[i + 1]), _pairs(answer[i + 2]), _HandOut(consumer, now))
            for i in range(1, len(answer), 3)
        ]

    async def keep(self, consumer: str, entries: Sequence[QueuedSms]) -> int:
        """keep_outbox.lua for each entry, in one pipeline: those still pending with `consumer` start their
        idle time again; any other (settled, claimed by another) is left as it is. How many were kept."""
        if not entries:
            return 0
        calls = [([self._outbox_of(queued)], [GROUP, queued.entry_id, consumer]) for queued in entries]
        return sum(int(kept) for kept in await self._scripts.run_all("keep_outbox", calls))

    async def challenge(self, queued: QueuedSms) -> Challenge:
        """HGETALL on the outbox's connection, off the request path's pool. ChallengeNotFound."""
        with translated():
            raw = await self._client.hgetall(self._keys.challenge(queued.challenge_id))
        if not raw:
            raise ChallengeNotFound(queued.challenge_id)
        return stored_challenge(cast("dict[bytes, bytes]", raw))

    async def settle(  # noqa: PLR0913 (the entry, what became of it, and what is journaled with it)
        self,
        queued: QueuedSms,
        state: DeliveryState,
        provider_ref: str,
        at: datetime,
        text: SentText | None = None,
        *,
        provider_ids: tuple[str, ...] = (),
        unconfirmed: tuple[str, ...] = (),
        held: bool = False,
    ) -> bool:
        """record_dispatch.lua: the send recorded and journaled, the entry acknowledged and deleted; False
        when this attempt's send was recorded already (the step ran, its answer was lost: nothing written)."""
        challenge_id = queued.challenge_id
        keys = [
            self._keys.challenge(challenge_id),
            self._keys.challenge_journal(challenge_id),
            self._keys.outbox_of(challenge_id),
        ]
        head = rec.challenge_event("challenge.delivery", challenge_id, at)
        written = [] if text is None else [item for pair in text.journal_fields().items() for item in pair]
        # SMPP: one id per part that had one; no other (decision 0041's rule, an outside audit found 122 KB).
        if kept := [message_id for message_id in provider_ids if smsc_message_id(message_id)]:
            written += ["provider_id", " ".join(kept)]
        if unconfirmed:  # earlier providers that may have taken it (0120)
            written += ["unconfirmed_before", " ".join(unconfirmed)]
        if held:  # the provider holds it, no SMSC connected (0124)
            written += ["provider_queued", "true"]
        args = [
            GROUP,
            queued.entry_id,
            state.value,
            provider_ref,
            queued.attempt,
            *head,
            "provider_ref",
            provider_ref,
            *written,
        ]
        return int(await self._scripts.run("record_dispatch", keys, args)) != 2

    async def settle_notice(self, queued: QueuedSms, user_id: str, notice: UserNotice) -> bool:
        """record_notice.lua: the notice in the user's journal (sealed, with its text's hash and template
        version), the entry acknowledged and deleted; False when this attempt's notice was journaled already
        (decision 0056: nothing written)."""
        keys = [
            self._keys.user_journal(user_id),
            self._outbox_of(queued),
            self._keys.notice_settled(user_id, queued.entry_id),
            *self._addressee_key(queued),
        ]
        entry = rec.notice_entry(user_id, notice, "challenge_id", queued.challenge_id)
        args = [GROUP, queued.entry_id, queued.attempt, NOTICE_ATTEMPTS_KEPT // rec.MS, *entry]
        return int(await self._scripts.run("record_notice", keys, args)) != 2

    async def addressee(self, queued: QueuedSms) -> NoticeAddressee | None:
        """HGETALL of the override notice's addressee hash, on the outbox's connection."""
        (key,) = self._addressee_key(queued)
        with translated():
            raw = cast("dict[bytes, bytes]", await self._client.hgetall(key))
        if not raw:
            return None
        return NoticeAddressee(raw[b"phone"].decode(), raw[b"new_phone"].decode(), raw[b"locale"].decode())

    def _outbox_of(self, queued: QueuedSms) -> str:
        """The outbox the entry is in: its challenge's shard's, or for an override's notice (no challenge)
        its user's (decision 0044)."""
        if queued.challenge_id:
            return self._keys.outbox_of(queued.challenge_id)
        return self._keys.user_outbox(queued.user_id)

    def _addressee_key(self, queued: QueuedSms) -> list[str]:
        """The key of the hash an override's notice names (decision 0041); none for other entries."""
        return [self._keys.user_notice(queued.user_id, queued.notice_id)] if queued.notice_id else []

    async def fail(
        self, queued: QueuedSms, failure: str, at: datetime, allowed: int, *, text: SentText | None = None
    ) -> FailedTry:
        """record_failed_try.lua: another try later, or the dead letter, in one step."""
        challenge_id = queued.challenge_id
        keys = [
            self._keys.challenge(challenge_id),
            self._keys.challenge_journal(challenge_id),
            self._keys.outbox_of(challenge_id),
            self._keys.dead_letters_of(challenge_id),
        ]
        head = rec.challenge_event("challenge.dead_letter", challenge_id, at)[2:]  # the script names it
        if text is not None:
            head += [item for pair in text.journal_fields().items() for item in pair]
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

    async def fail_notice(
        self, queued: QueuedSms, user_id: str, notice: UserNotice, failed: NoticeFailure
    ) -> FailedTry:
        """record_failed_notice.lua: another try later, or the dead letter, in one step (decision 0041)."""
        keys = [
            self._keys.user_journal(user_id),
            self._outbox_of(queued),
            self._keys.user_dead_letters(user_id),
            self._keys.notice_unconfirmed(user_id, queued.entry_id),
            *self._addressee_key(queued),
        ]
        args = [
            GROUP,
            queued.entry_id,
            failed.failure,
            failed.allowed,
            rec.to_ms(failed.at),
            rec.to_ms(failed.stale_at),
            DEAD_LETTERS_KEPT,
            DEAD_LETTERS_LIFETIME // rec.MS,
            rec.to_ms(queued.queued_at),
            queued.challenge_id,
            user_id,
            mask_phone(notice.to),
            queued.notice,
            *rec.notice_entry(user_id, notice),
        ]
        reply = await self._scripts.run("record_failed_notice", keys, args)
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

    async def _group_made(self, stream: str) -> bool:
        """Make the group again on a stream that lost it (True); False when there is no stream yet."""
        try:
            await self._client.xgroup_create(stream, GROUP, id="0")
        except ResponseError as exc:
            return "BUSYGROUP" in str(exc)  # made by another dispatcher meanwhile; else no stream
        return True


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _readable(raw: dict[bytes, bytes]) -> Challenge | None:
    """The challenge a hash holds; None when it was purged, or is damaged (the dispatcher's own read then
    fails alone, leaving its entry pending, not the batch it came in)."""
    if not raw:
        return None
    try:
        return rec.challenge_from_hash(raw)
    except rec.CorruptRecord:
        return None


@dataclass(frozen=True, slots=True)
class _HandOut:
    """A take or claim of an entry: by whom, when (just before it was asked), and its own attempt."""

    consumer: str
    at: datetime
    attempt: str = field(default_factory=lambda: secrets.token_hex(6))


def _queued(
    entry_id: bytes,
    fields: dict[bytes, bytes],
    challenge: dict[bytes, bytes] | None = None,
    hand_out: _HandOut | None = None,
) -> QueuedSms:
    until = int(fields.get(b"until", b"0"))
    return QueuedSms(
        entry_id=entry_id.decode(),
        challenge_id=fields[b"challenge_id"].decode(),
        queued_at=rec.from_ms(int(fields[b"queued_at"])),
        notice=fields.get(b"notice", b"").decode(),
        until=rec.from_ms(until) if until else None,
        challenge=_readable(challenge or {}),
        trace=fields.get(b"trace", b"").decode(),
        user_id=fields.get(b"user_id", b"").decode(),
        notice_id=fields.get(b"notice_id", b"").decode(),
        hold=fields.get(b"hold", b"").decode(),
        withheld=fields.get(b"withheld", b"").decode(),
        attempt=hand_out.attempt if hand_out else "",
        consumer=hand_out.consumer if hand_out else "",
        taken_at=hand_out.at if hand_out else None,
    )


_: type[Outbox] = RedisOutbox

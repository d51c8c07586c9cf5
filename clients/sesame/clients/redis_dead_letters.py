"""`RedisDeadLetters`: the SMS the outbox gave up on, read from their stream (docs/decisions/0033).

`record_failed_try.lua` appends one masked line per dead letter to the stream beside its shard's outbox,
`<prefix>:{s:<n>}:dead` (decision 0044; never the code, never the whole number), trimmed to the last 10,000
and to seven days; this adapter only reads them, for `sesame sms dead-letters`.
"""

from __future__ import annotations

from typing import cast

from sesame.clients import redis_records as rec
from sesame.clients.redis_connect import RedisClient
from sesame.clients.redis_keys import SHARDS, Keyspace
from sesame.clients.redis_scripts import translated
from sesame.server.domain.dispatching import DeadLetter
from sesame.server.domain.errors import StoreUnavailable
from sesame.server.domain.model import DeliveryState
from sesame.server.domain.ports import DeadLetters


class RedisDeadLetters:
    """The dead letters streams beside each shard's outbox (decision 0044)."""

    def __init__(self, client: RedisClient, *, prefix: str = "sesame", shards: int = SHARDS) -> None:
        """Read with `client` (which must not decode responses), the streams of `shards` shards."""
        self._client = client
        keys = Keyspace(prefix, shards)
        self._streams = [keys.dead_letters(n) for n in range(keys.shards)]

    async def recent(self, count: int) -> list[DeadLetter]:
        """XREVRANGE of every shard's stream: the newest `count` lines of them all, newest first."""
        letters: list[tuple[tuple[int, int], DeadLetter]] = []
        with translated():
            for stream in self._streams:
                raw = await self._client.xrevrange(stream, count=count)
                for entry_id, fields in cast("list[tuple[bytes, dict[bytes, bytes]]]", raw):
                    ms, _, seq = entry_id.decode().partition("-")
                    letters.append(((int(ms), int(seq or 0)), _letter(entry_id, fields)))
        letters.sort(key=lambda pair: pair[0], reverse=True)
        return [letter for _, letter in letters[:count]]


def _letter(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    try:
        return DeadLetter(
            letter_id=entry_id.decode(),
            challenge_id=fields[b"challenge_id"].decode(),
            user_id=fields[b"user_id"].decode(),
            masked_phone=fields[b"phone"].decode(),
            state=DeliveryState(fields[b"state"].decode()),
            reason=fields[b"reason"].decode(),
            failure=fields[b"failure"].decode(),
            tries=int(fields[b"tries"]),
            queued_at=rec.from_ms(int(fields[b"queued_at"])),
            at=rec.from_ms(int(fields[b"at"])),
            notice=fields.get(b"notice", b"").decode(),
        )
    except (KeyError, ValueError) as exc:
        raise StoreUnavailable("corrupt dead letter") from exc


_: type[DeadLetters] = RedisDeadLetters

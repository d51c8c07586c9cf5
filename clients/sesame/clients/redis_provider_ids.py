"""`RedisProviderIds`: an SMSC's message ids, leading back to our messages across restarts (decision 0030).

Written when the SMSC answers a submit_sm with its id, read when a receipt names an id the process does
not know (it was sent before a restart, or by another worker). One key per id, with a TTL: nothing to
purge, and each write is one key, so atomic without a script. A message's delivered parts are counted by
count_delivered_part.lua, which runs out of memory (decision 0111). Nothing here is journaled: the journal
gets the delivery the receipt then records through the Challenges port.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sesame.clients.redis_connect import RedisClient, connect
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_records import to_ms
from sesame.clients.redis_scripts import Scripts, translated
from sesame.server.domain.errors import ProviderIdUnknown, StoreUnavailable
from sesame.server.domain.model import SentPart
from sesame.server.domain.ports import ProviderIds


class RedisProviderIds:
    """Provider ids in Redis, on the client given (which must not decode responses)."""

    def __init__(self, client: RedisClient, *, prefix: str = "sesame") -> None:
        """Use `client`; keys under `prefix`."""
        self._client = client
        self._keys = Keyspace(prefix)
        self._scripts = Scripts(client)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "sesame", timeout: float = 2.0) -> RedisProviderIds:
        """On a connection pool of its own (the SMPP session's reader must not queue behind the flows)."""
        client = connect(url, timeout=timeout)
        return cls(client, prefix=prefix)

    async def close(self) -> None:
        """Close the connections."""
        with translated():
            await self._client.aclose()

    async def remember(self, provider_id: str, part: SentPart, until: datetime) -> None:
        """One hash, its TTL set in the same transaction."""
        key = self._keys.provider_id(provider_id)
        fields = {"challenge": part.challenge_id, "ref": part.provider_ref, "parts": str(part.parts)}
        with translated():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                pipe.expireat(key, until)
                await pipe.execute()

    async def owner(self, provider_id: str) -> SentPart:
        """ProviderIdUnknown when no such id is remembered."""
        with translated():
            raw = cast("dict[bytes, bytes]", await self._client.hgetall(self._keys.provider_id(provider_id)))
        if not raw:
            raise ProviderIdUnknown(provider_id)
        try:
            return SentPart(raw[b"challenge"].decode(), raw[b"ref"].decode(), int(raw[b"parts"]))
        except (KeyError, ValueError) as exc:
            raise StoreUnavailable("corrupt provider id record") from exc

    async def delivered_parts(self, provider_ref: str, provider_id: str, parts: int, until: datetime) -> int:
        """count_delivered_part.lua: two receipts of one id count once, and no more ids than `parts` are kept;
        run out of memory (decision 0111)."""
        key = self._keys.parts_delivered(provider_ref)
        now = to_ms(datetime.now(UTC))
        args: list[str | int] = [provider_id, parts, to_ms(until), now]
        return int(await self._scripts.run("count_delivered_part", [key], args))


_: type[ProviderIds] = RedisProviderIds

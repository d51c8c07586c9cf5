"""`RedisKeyLedger`: the key versions Redis has seen, and the fingerprint of each label (docs/decisions/0015).

One small hash in shard 0's place (`{s:0}:keys:ledger`), read and written at boot. Writing is one script that
refuses, atomically and writing nothing, a label already seen with another fingerprint: two replicas that
boot at once on different tokens cannot both record theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sesame.clients.redis_connect import RedisClient, connect
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_lane import close_lane
from sesame.clients.redis_scripts import Scripts, translated
from sesame.server.domain.errors import KeyReplaced, StoreUnavailable
from sesame.server.domain.key_ledger import KeyPrint, KeysSeen
from sesame.server.domain.model import KeyKind


class RedisKeyLedger:
    """The key ledger in Redis. Open with `from_url`, release with `close()`."""

    def __init__(self, client: RedisClient, *, prefix: str = "sesame") -> None:
        """Use `client` (which must not decode responses)."""
        self._client = client
        self._keys = Keyspace(prefix)
        self._scripts = Scripts(client)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "sesame", timeout: float = 2.0) -> RedisKeyLedger:
        """A ledger on a connection of its own (it is used at boot only)."""
        client = connect(url, timeout=timeout)
        return cls(client, prefix=prefix)

    async def close(self) -> None:
        """Close the connection and the lane."""
        with translated():
            await close_lane(self._client)
            await self._client.aclose()

    async def seen(self) -> KeysSeen:
        """The highest version of each kind and every label's fingerprint. StoreUnavailable."""
        with translated():
            raw = cast("dict[bytes, bytes]", await self._client.hgetall(self._keys.key_ledger()))
        fields = {name.decode(): value.decode() for name, value in raw.items()}
        try:
            highest = {kind: int(fields[kind.value]) for kind in KeyKind if kind.value in fields}
        except ValueError as exc:
            raise StoreUnavailable("corrupt key ledger") from exc
        prints = {name: value for name, value in fields.items() if name.startswith("sesame-")}
        return KeysSeen(highest, prints)

    async def record(self, held: Sequence[KeyPrint], at: datetime) -> None:
        """Remember `held`: highest versions, fingerprints. KeyReplaced (then nothing is written)."""
        if not held:
            return
        args: list[str | int] = [at.isoformat()]
        for key in held:
            args.extend((key.kind.value, key.version, key.fingerprint))
        keys = [self._keys.key_ledger(), self._keys.key_ledger_journal()]
        outcome = cast("list[bytes | int]", await self._scripts.run("record_keys", keys, args))
        if outcome[0] == b"replaced":
            raise KeyReplaced(cast("bytes", outcome[1]).decode())

"""`RedisClients`: the Clients port on Redis (docs/decisions/0038).

A client company's status, its index of users and its journal live in its id's shard (one slot); each
change is one Lua script there (`enlist_user.lua`, `delist_user.lua`, `terminate_client.lua`).
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sesame.clients import redis_records as rec
from sesame.clients.redis_place import RedisPlace
from sesame.server.domain.errors import ClientNotFound, ClientTerminated
from sesame.server.domain.lifecycle import ClientTermination
from sesame.server.domain.ports import Clients


class RedisClients(RedisPlace):
    """Client companies in Redis; each change is one atomic, journaled script on the client's slot."""

    async def enlist_user(self, client_id: str, user_id: str, at: datetime) -> None:
        """Add the user to its client's index. ClientTerminated."""
        keys = [self.keys.client(client_id), self.keys.client_users(client_id)]
        if await self._scripts.run("enlist_user", keys, [client_id, user_id, rec.to_ms(at)]) != 1:
            raise ClientTerminated(client_id)

    async def delist_user(self, client_id: str, user_id: str) -> None:
        """Take the user back out of its client's index (see the port)."""
        keys = [self.keys.client(client_id), self.keys.client_users(client_id)]
        await self._scripts.run("delist_user", keys, [user_id])

    async def client_users(self, client_id: str) -> list[str]:
        """Every user id ever enlisted for the client."""
        members = cast(
            "set[bytes]",
            await self._scripts.call(
                "client_users", self._client.smembers(self.keys.client_users(client_id))
            ),
        )
        return sorted(member.decode() for member in members)

    async def terminate_client(self, termination: ClientTermination) -> bool:
        """Refuse the client's enrolments from now on, journaled; whether this call did. ClientNotFound."""
        client_id, at = termination.client_id, termination.at
        keys = [self.keys.client(client_id), self.keys.client_journal(client_id)]
        head = ["event", "client.terminate", "at", rec.iso(at), "client_id", client_id]
        per_hour = self.noops.journaled_per_hour
        args = [rec.to_ms(at), per_hour, *head, *rec.provenance_fields(termination.provenance)]
        outcome = await self._scripts.run("terminate_client", keys, args)
        if outcome == b"not_found":
            raise ClientNotFound(client_id)
        return bool(outcome == b"terminated")

    async def client_journal(self, client_id: str) -> list[dict[str, str]]:
        """The client company's journal entries, oldest first."""
        return await self._read_journal("client_journal", self.keys.client_journal(client_id))


_: type[Clients] = RedisClients

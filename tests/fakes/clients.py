"""Client companies in memory: their status, the users they designated, their journal.

Mirrors `enlist_user.lua` and `terminate_client.lua`, on the client's own lock as Redis runs them on the
client's own slot.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from sesame.server.domain.errors import ClientNotFound, ClientTerminated
from sesame.server.domain.lifecycle import ClientTermination
from sesame.server.domain.noops import NOOP_DEFAULTS, NoopLimits
from sesame.server.domain.ports import Clients
from tests.fakes.hourly import Windows, journaled_hourly
from tests.fakes.journal_fields import iso, provenance_fields


class MemoryClients:
    """Client companies in dicts behind their own lock."""

    def __init__(self, noops: NoopLimits = NOOP_DEFAULTS) -> None:
        self._clients_lock = asyncio.Lock()
        self._clients: dict[str, str] = {}  # client -> status
        self._client_users: dict[str, set[str]] = {}
        self._client_journals: dict[str, list[dict[str, str]]] = {}
        self._noops_per_hour = noops.journaled_per_hour
        self._noops: Windows = {}  # as terminate_client.lua's _journal_hourly.lua, on the client hash

    async def enlist_user(self, client_id: str, user_id: str, at: datetime) -> None:
        async with self._clients_lock:
            if self._clients.setdefault(client_id, "active") == "terminated":
                raise ClientTerminated(client_id)
            self._client_users.setdefault(client_id, set()).add(user_id)

    async def delist_user(self, client_id: str, user_id: str) -> None:
        async with self._clients_lock:
            users = self._client_users.get(client_id, set())
            users.discard(user_id)
            if not users and self._clients.get(client_id) == "active":  # as delist_user.lua
                self._clients.pop(client_id)
                self._client_users.pop(client_id, None)

    async def client_users(self, client_id: str) -> list[str]:
        return sorted(self._client_users.get(client_id, set()))

    async def terminate_client(self, termination: ClientTermination) -> bool:
        async with self._clients_lock:
            client_id = termination.client_id
            status = self._clients.get(client_id)
            if status is None:
                raise ClientNotFound(client_id)
            self._clients[client_id] = "terminated"
            entry = {
                "event": "client.terminate",
                "at": iso(termination.at),
                "client_id": client_id,
                **provenance_fields(termination.provenance),
                "outcome": "unchanged" if status == "terminated" else "terminated",
            }
            added = {} if status != "terminated" else self._noop(client_id, termination.at)
            if added is not None:  # a repeated termination: its hour's first journaled, later ones counted
                self._client_journals.setdefault(client_id, []).append(entry | added)
            return status != "terminated"

    def _noop(self, client_id: str, at: datetime) -> dict[str, str] | None:
        return journaled_hourly(self._noops, client_id, self._noops_per_hour, at)

    async def client_journal(self, client_id: str) -> list[dict[str, str]]:
        return list(self._client_journals.get(client_id, []))


_: type[Clients] = MemoryClients

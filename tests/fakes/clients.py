"""Client companies in memory: their status, the users they designated, their journal.

Mirrors `enlist_user.lua` and `terminate_client.lua`, on the client's own lock as Redis runs them on the
client's own slot.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sesame.server.domain.errors import ClientNotFound, ClientTerminated
from sesame.server.domain.lifecycle import ClientTermination
from sesame.server.domain.noops import NOOP_DEFAULTS, NoopLimits
from sesame.server.domain.ports import Clients
from tests.fakes.journal_fields import iso, provenance_fields


class MemoryClients:
    """Client companies in dicts behind their own lock."""

    def __init__(self, noops: NoopLimits = NOOP_DEFAULTS) -> None:
        self._clients_lock = asyncio.Lock()
        self._clients: dict[str, str] = {}  # client -> status
        self._client_users: dict[str, set[str]] = {}
        self._client_journals: dict[str, list[dict[str, str]]] = {}
        self._noops_per_hour = noops.journaled_per_hour
        self._noops: dict[str, tuple[datetime, int, int]] = {}  # client -> hour's start, count, unjournaled

    async def enlist_user(self, client_id: str, user_id: str, at: datetime) -> None:
        async with self._clients_lock:
            if self._clients.setdefault(client_id, "active") == "terminated":
                raise ClientTerminated(client_id)
            self._client_users.setdefault(client_id, set()).add(user_id)

    async def client_users(self, client_id: str) -> list[str]:
        return sorted(self._client_users.get(client_id, set()))

    async def terminate_client(self, termination: ClientTermination) -> None:
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
            noted = entry if status != "terminated" else self._noop_entry(client_id, entry, termination.at)
            if noted is not None:
                self._client_journals.setdefault(client_id, []).append(noted)

    def _noop_entry(self, client_id: str, entry: dict[str, str], at: datetime) -> dict[str, str] | None:
        """As _journal_hourly.lua on the client hash: the client's first no-ops of the hour journaled (with
        the count of those unjournaled before, `unjournaled_before`), later ones only counted (None)."""
        since, count, unjournaled = self._noops.get(client_id, (at, 0, 0))
        if at - since >= timedelta(hours=1):
            since, count = at, 0
        if count + 1 > self._noops_per_hour:
            self._noops[client_id] = (since, count + 1, unjournaled + 1)
            return None
        self._noops[client_id] = (since, count + 1, 0)
        return {**entry, "unjournaled_before": str(unjournaled)} if unjournaled else entry

    async def client_journal(self, client_id: str) -> list[dict[str, str]]:
        return list(self._client_journals.get(client_id, []))


_: type[Clients] = MemoryClients

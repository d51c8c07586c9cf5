"""`RedisPlace`: what every aggregate's Redis adapter shares (docs/decisions/0038).

One client (which must not decode responses), the keyspace (every key and its hash tag), the scripts and
their one timed funnel, and how long a challenge is kept past its expiry; with the key lists and argument
shapes that the scripts of several aggregates take alike. The adapters (`redis_users`, `redis_clients`,
`redis_challenges`, `redis_proofs`, `redis_challenge_journal`) each add their own aggregate's operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final, cast

from sesame.clients import redis_records as rec
from sesame.clients.redis_connect import RedisClient
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_outbox_nudge import NO_NUDGE, OutboxNudge
from sesame.clients.redis_scripts import Scripts
from sesame.server.domain.noops import NOOP_DEFAULTS, NoopLimits

DEFAULT_RETENTION: Final = timedelta(hours=24)


class RedisPlace:
    """The client, keys and scripts an aggregate's adapter runs its transitions with."""

    def __init__(  # noqa: PLR0913 (the place, and what its steps are told: the nudge, the no-ops bound)
        self,
        client: RedisClient,
        keys: Keyspace,
        scripts: Scripts,
        retention: timedelta = DEFAULT_RETENTION,
        *,
        nudge: OutboxNudge = NO_NUDGE,
        noops: NoopLimits = NOOP_DEFAULTS,
    ) -> None:
        self._client = client
        self.keys = keys
        self._scripts = scripts
        self._retention = retention
        self._nudge = nudge  # told which shard a step queued an SMS in (decision 0060)
        self.noops = noops  # the bound of the calls that change nothing: a user's, a client's (0054, 0100)

    async def _run(
        self, name: str, keys: Sequence[str], args: Sequence[rec.Field], *, program: str = ""
    ) -> Any:
        return await self._scripts.run(name, keys, args, program=program)

    async def _read_journal(self, call: str, key: str, *, chain: bool = False) -> list[dict[str, str]]:
        """A journal's entries, oldest first; without the chain's fields (decision 0027) unless `chain`."""
        entries = cast(
            "list[tuple[bytes, dict[bytes, bytes]]]", await self._scripts.call(call, self._client.xrange(key))
        )
        read = rec.decoded if chain else rec.event_fields
        return [read(fields) for _, fields in entries]

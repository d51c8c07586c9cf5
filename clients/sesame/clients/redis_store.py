"""`RedisState`: the state ports on one Redis, one adapter per aggregate (docs/decisions/0002, 0038).

Keys carry the hash tag of their shard (`{s:<n>}`: a user and its challenges, a client; see `redis_keys`) so
that an aggregate and its journal stream live together, with its shard's journal feed and outbox. Each
aggregate has its own adapter (`redis_users`, `redis_clients`, `redis_challenges`, `redis_proofs`,
`redis_challenge_journal`) over one client, keyspace and script funnel; this module opens the connection,
bundles the adapters as the flows are given them, and hands out the other ports that live in the same
Redis (outbox, sealed journal, risk memory).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from sesame.clients.redis_challenge_journal import RedisChallengeJournal
from sesame.clients.redis_challenges import RedisChallenges
from sesame.clients.redis_clients import RedisClients
from sesame.clients.redis_connect import (
    RedisClient,
    check_cluster,
    check_keeps_keys,
    connect,
    is_cluster_url,
    say_once,
)
from sesame.clients.redis_evidence_index import RedisEvidenceIndex
from sesame.clients.redis_health_notes import RedisHealthNotes
from sesame.clients.redis_journal import RedisJournal
from sesame.clients.redis_keys import SHARDS, Keyspace
from sesame.clients.redis_lane import close_lane
from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_outbox_bell import Heard
from sesame.clients.redis_outbox_nudge import NO_NUDGE, OutboxNudge
from sesame.clients.redis_place import DEFAULT_RETENTION, RedisPlace
from sesame.clients.redis_proofs import RedisProofs
from sesame.clients.redis_scripts import Scripts
from sesame.clients.redis_scripts import translated as _translated
from sesame.clients.redis_send_units import RedisSendUnits
from sesame.clients.redis_users import RedisUsers
from sesame.server.domain.call_meter import UNMETERED, CallMeter
from sesame.server.domain.errors import ConfigurationError
from sesame.server.domain.noops import NOOP_DEFAULTS, NoopLimits
from sesame.server.domain.ports import Probe, ReferenceClock, State

_log = logging.getLogger("sesame.redis")


@dataclass
class LayoutGate:
    """The gate of every call (`admit`) while Redis holds another shard count than this worker's: found by
    the store's probe (`RedisState.check`), cleared when a later round finds its own again.

    A worker that found the count changed while it served (Redis emptied, then a boot with another
    SESAME_REDIS_SHARDS recorded its own) went on serving with its own: it wrote users, challenges and SMS
    where the other servers never read them (an outside audit). It answers every call but health's
    `INTERNAL` "server misconfigured", nothing done, until the deployment is one count again."""

    refused: str = ""

    def admit(self, method: str) -> None:  # noqa: ARG002 (the Gate protocol: every method alike)
        """Return when calls may run; ConfigurationError while the layout is another server's."""
        if self.refused:
            raise ConfigurationError(self.refused)


@dataclass(frozen=True)
class RedisState(State):
    """The aggregates' adapters on one client, keyspace and script funnel (`place`)."""

    users: RedisUsers
    clients: RedisClients
    challenges: RedisChallenges
    proofs: RedisProofs
    journal: RedisChallengeJournal
    send_units: RedisSendUnits
    place: RedisPlace
    layout: LayoutGate = field(default_factory=LayoutGate)  # what the probe found of the shard count

    @classmethod
    def on(  # noqa: PLR0913 (keyword-only, with defaults: where keys are, how long kept and bounded)
        cls,
        client: RedisClient,
        *,
        prefix: str = "sesame",
        shards: int = SHARDS,
        retention: timedelta = DEFAULT_RETENTION,
        noops: NoopLimits = NOOP_DEFAULTS,
        meter: CallMeter = UNMETERED,
        nudge: OutboxNudge = NO_NUDGE,
    ) -> RedisState:
        """Use `client` (which must not decode responses); keys in `shards` places; keep challenges
        `retention` past expiry; bound the back-office no-ops by `noops`; report every round trip to
        `meter`; tell `nudge` which shard a step queued an SMS in (decision 0060)."""
        keys, scripts = Keyspace(prefix, shards), Scripts(client, meter)
        return cls(
            users=RedisUsers(client, keys, scripts, retention, nudge=nudge, noops=noops),
            clients=RedisClients(client, keys, scripts, retention, noops=noops),
            challenges=RedisChallenges(client, keys, scripts, retention, nudge=nudge),
            proofs=RedisProofs(client, keys, scripts, retention),
            journal=RedisChallengeJournal(client, keys, scripts, retention),
            send_units=RedisSendUnits(client, keys, scripts, retention),
            place=RedisPlace(client, keys, scripts, retention),
        )

    @classmethod
    def from_url(  # noqa: PLR0913 (as `on`)
        cls,
        url: str,
        *,
        prefix: str = "sesame",
        shards: int = SHARDS,
        retention: timedelta = DEFAULT_RETENTION,
        noops: NoopLimits = NOOP_DEFAULTS,
        timeout: float = 2.0,
    ) -> RedisState:
        """The state on its own connection pool, with bounded socket timeouts and no blind retries."""
        # A transition that timed out may have run; replaying it would count an attempt twice or answer
        # ALREADY_USED to the caller who won. The caller retries with its request id instead.
        # On a cluster, a MOVED redirect is followed (the command did not run where it was sent); a script
        # is not sent on an ASK, nor run on a migrating slot at all (decision 0068).
        # On one server the transitions go on the lane, never sent twice (decision 0063); the pool carries
        # reads and idempotent writes only, sent once more on a connection found closed (a pooled connection
        # Redis closed when it restarted: without it, the first read after a restart failed).
        retry = (
            Retry(NoBackoff(), 0)
            if is_cluster_url(url)
            else Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        )
        client = connect(url, timeout=timeout, health_check_interval=30, retry=retry)
        return cls.on(client, prefix=prefix, shards=shards, retention=retention, noops=noops)

    async def check_layout(self, *, record: bool = True) -> bool:
        """Record the shard count at the first boot (unless not to `record`: a tool that only reads); refuse
        to run on keys laid out with another count, which would look for every user in the wrong place and
        leave the SMS queued in the old shards' outboxes undispatched (decisions 0044, 0058), or a reading
        tool show part of them. Whether it recorded the count now. ConfigurationError."""
        key, shards = self.keys.layout(), self.keys.shards
        written = False
        with _translated():
            # Read first, written only at the first boot: Redis refuses a SET out of memory even when it
            # would change nothing, and a worker restarted while Redis is full could not boot (0111).
            recorded = await self._client.get(key)
            if recorded is None and record:
                written = bool(await self._client.set(key, shards, nx=True))
                recorded = await self._client.get(key)
        if recorded is not None and int(recorded) != shards:
            raise ConfigurationError(
                f"Redis holds keys laid out in {int(recorded)} shards; SESAME_REDIS_SHARDS is {shards}: a "
                "deployment keeps the count its data was written with (its users, journals and queued SMS "
                "are where that count put them)"
            )
        return written

    @property
    def keys(self) -> Keyspace:
        """Every key and its hash tag."""
        return self.place.keys

    @property
    def _client(self) -> RedisClient:
        return self.place._client  # noqa: SLF001 (the place is this module's own)

    def outbox(self, heard: Heard = Heard.WATCHING) -> RedisOutbox:
        """The SMS outbox in the same Redis, on a pool of its own (docs/decisions/0025), whose dispatchers
        hear of new entries as `heard` says (decision 0060)."""
        return RedisOutbox.beside(self._client, prefix=self.keys.prefix, shards=self.keys.shards, heard=heard)

    def sealed_journal(self) -> RedisJournal:
        """The feed, seals and sealer's lease of these journals, on the same connections."""
        return RedisJournal(self._client, self.keys, self.place._scripts)  # noqa: SLF001 (as above)

    def evidence_index(self) -> RedisEvidenceIndex:
        """The users' evidence indexes (decision 0036), on the same connections."""
        return RedisEvidenceIndex(self._client, self.keys, self.place._scripts)  # noqa: SLF001 (as above)

    def health_notes(self) -> RedisHealthNotes:
        """The health notes' journal (decision 0036), on the same connections and scripts."""
        return RedisHealthNotes(self._client, self.keys, self.place._scripts)  # noqa: SLF001 (as above)

    def metered(self, meter: CallMeter, nudge: OutboxNudge = NO_NUDGE) -> RedisState:
        """A view of this state (same client and pool) that reports every round trip to `meter`, and tells
        `nudge` which shard its steps queued an SMS in.

        The service's flows use the view; health probes the state itself (a probe is not traffic).
        """
        return RedisState.on(
            self._client,
            prefix=self.keys.prefix,
            shards=self.keys.shards,
            retention=self.place._retention,  # noqa: SLF001 (as above)
            noops=self.users.noops,
            meter=meter,
            nudge=nudge,
        )

    async def close(self) -> None:
        """Close the client, its connections and its lane."""
        with _translated():
            await close_lane(self._client)
            await self._client.aclose()

    async def check(self) -> None:
        """Return when Redis answers PING, on a cluster every primary says `cluster_state:ok`, it evicts no
        key and holds the shard count (recorded again, said by a WARNING, when Redis lost it).
        StoreUnavailable (for the health watcher, and at boot: docs/decisions/0047), ConfigurationError.

        A count lost while serving (FLUSHALL, a restart without its data, a failover to an empty replica)
        was never recorded again: a later boot with another SESAME_REDIS_SHARDS was accepted and split the
        data written since (an outside audit)."""
        # Through the same pool as the transitions: a pool that cannot reconnect fails here too.
        with _translated():
            await self._client.ping()
        await check_cluster(self._client)
        await check_keeps_keys(self._client)
        await self._commands_allowed()
        try:
            recorded = await self.check_layout()
        except ConfigurationError as exc:
            # Another count recorded meanwhile (the count lost, then a boot with another one): this worker
            # would write where the other's never reads; health fails, calls are refused (`LayoutGate`), and
            # the line says why (an outside audit).
            say_once(str(exc), logging.ERROR, str(exc))
            self.layout.refused = str(exc)
            raise
        self.layout.refused = ""
        if recorded:
            _log.warning(
                "Redis no longer held the shard count (emptied, or restarted without its data?): recorded "
                "again"
            )

    async def _commands_allowed(self) -> None:
        """ConfigurationError when Redis's ACL refuses Sésame's user a command its scripts call: refused in
        the middle of a script, it leaves the writes before it (a Start's challenge without its SMS, a
        Verify's attempt counted without its answer: an outside audit). Said once by an ERROR line."""
        scripts = self.place._scripts  # noqa: SLF001 (the place is this module's own)
        refused = await scripts.run("commands_refused", [self.keys.layout()], scripts.commands())
        if refused:  # None: a Redis before 7.0, which cannot tell
            names = ", ".join(sorted(name.decode().upper() for name in refused))
            said = f"Redis's ACL refuses commands Sésame's scripts call: {names}"
            say_once(said, logging.ERROR, f"{said}: give its user every command on its keys (+@all)")
            raise ConfigurationError(said)

    async def reference_now(self) -> datetime:
        """Redis's clock (TIME), which every worker's is compared with (decision 0104); on a cluster, the
        first primary's. StoreUnavailable."""
        with _translated():
            if isinstance(self._client, RedisCluster):
                await self._client.initialize()
                seconds, micros = await self._client.time(target_nodes=self._client.get_primaries()[0])
            else:
                seconds, micros = await self._client.time()
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micros)


_probe: type[Probe] = RedisState
_reference: type[ReferenceClock] = RedisState

"""The composition root: the one place that wires adapters to flows and runs the server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from sesame.clients.redis_key_ledger import RedisKeyLedger
from sesame.clients.redis_outbox_bell import Heard
from sesame.clients.redis_outbox_nudge import NO_NUDGE, OutboxNudge
from sesame.clients.redis_provider_ids import RedisProviderIds
from sesame.clients.redis_scripts import call_names
from sesame.clients.redis_store import RedisState
from sesame.clients.smpp_pdu import Address
from sesame.clients.smpp_session import Timing
from sesame.clients.sms_breaker import BreakerSettings, BreakerState
from sesame.clients.sms_console import ConsoleSmsGateway
from sesame.clients.sms_failover import (
    UNOBSERVED,
    FailoverSmsGateway,
    Provider,
    ProviderObserver,
    Reliability,
)
from sesame.clients.sms_policy import RetryPolicy
from sesame.clients.sms_smpp import SmppConfig, SmppSmsGateway
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.hsm.softhsm import bootstrap_dev_token
from sesame.server.clock_watch import ClockWatch, SystemClock
from sesame.server.config import Settings
from sesame.server.dispatch_loop import DispatchLoops
from sesame.server.domain.challenges import ChallengeFlows, ChallengePolicy
from sesame.server.domain.dispatching import DEFAULT_SETTLE_WITHIN, Dispatcher, RecentCodes
from sesame.server.domain.enrollment import EnrollmentFlows
from sesame.server.domain.errors import ClockOff, ConfigurationError, StoreUnavailable
from sesame.server.domain.lifecycle import LifecyclePolicy
from sesame.server.domain.model import DeliveryState
from sesame.server.domain.ports import (
    Clock,
    Outbox,
    Probe,
    ReferenceClock,
    SendUnits,
    SimSwapCheck,
    SmsGateway,
    State,
)
from sesame.server.domain.proofs import FIRST_PAGES_AT_ONCE, MAX_SEALED_LEAVES, ProofFlows
from sesame.server.domain.risk_flow import RiskFlows, RiskPolicy
from sesame.server.fd_limit import connection_bound
from sesame.server.grpc.calls import Gate, Gates
from sesame.server.grpc.server import GrpcServer, Serving
from sesame.server.health_noting import HealthNoter
from sesame.server.heap import freeze_boot_heap
from sesame.server.journal_archive import JournalArchive
from sesame.server.journal_evidence import ChallengeSeals
from sesame.server.journal_reads import ArchivedJournals, ChallengeJournals
from sesame.server.jwk_keys import proof_verifies
from sesame.server.key_boot import KeyAudit, KeyBootPolicy, boot_keys, record_rotation
from sesame.server.loop_lag import LoopLagMonitor
from sesame.server.metrics import (
    DependencyMeter,
    MeteredSmsGateway,
    Metrics,
    MetricsEndpoint,
    MetricsTally,
    SealerGauges,
)
from sesame.server.risk_metrics import RiskMetrics
from sesame.server.risk_settings import RiskSettings, SimSwapSettings
from sesame.server.sealer import RETENTION, Sealer, SealerTiming
from sesame.server.smpp_settings import SmppSettings
from sesame.server.sms_providers import ProviderMeter
from sesame.server.sms_settings import DlrSettings, KannelSettings, ReliabilitySettings
from sesame.server.sms_watch import SMS_HEALTH_SERVICE, SmsWatch
from sesame.server.traced_keys import TracedKeyStore
from sesame.server.transport_settings import TransportSettings
from sesame.server.user_evidence import UserEvidenceReader

if TYPE_CHECKING:
    # Imported where used: httpx and aiohttp (with what they pull in, about 20 MB per worker) only load when
    # Kannel, its delivery reports or the SIM swap API are configured (docs/decisions/0039).
    from sesame.clients.camara_sim_swap import CamaraSimSwap
    from sesame.clients.sms_kannel import DlrCallback, KannelConfig

_log = logging.getLogger("sesame")
# After a step of the sealer process that sealed a block, the next step this soon (decision 0085).
SEALER_BUSY_INTERVAL = timedelta(milliseconds=200)


@dataclass(frozen=True, slots=True)
class Gateway:
    """An SMS gateway, the name its metrics carry, and the watch its providers report to."""

    name: str
    gateway: SmsGateway
    watch: SmsWatch | None = None  # None: one of its own, for the gateway as a whole
    breakers: Callable[[], Mapping[str, BreakerState]] | None = None  # its providers' breakers now


@dataclass(frozen=True, slots=True)
class Runtime:
    """The flows, wired to real adapters, and the dependencies health watches."""

    challenges: ChallengeFlows
    enrollment: EnrollmentFlows
    proofs: ProofFlows
    clock: SystemClock
    probes: Mapping[str, Probe]
    metrics: Metrics
    dispatcher: Dispatcher  # sends what the outbox holds, through the same metered gateway
    gate: ClockWatch  # refuses every call, holds the dispatchers, while the clock is out of step (0104)
    layout: Gate | None = None  # refuses every call while Redis holds another shard count than ours
    advisories: Mapping[str, Callable[[], bool]] = field(default_factory=dict)  # health names: works?
    seals: ChallengeSeals | None = None  # what a challenge's evidence says of its seals
    user_evidence: UserEvidenceReader | None = None  # a user's evidence: index, lifecycle, health (0036)
    health_notes: HealthNoter | None = None  # journals what health sees (decision 0036)

    @property
    def call_gate(self) -> Gate:
        """What every call but health's must pass: the clock in step, and the store's layout ours."""
        return self.gate if self.layout is None else Gates(self.gate, self.layout)


def hsm_config(settings: Settings, *, create: bool = True) -> Pkcs11Config:
    """The operator's token, or the development token under `var/` (created on first use, unless `create`
    is False: a command that only reads keys never leaves a new token behind)."""
    if settings.hsm is None:
        try:
            dev = bootstrap_dev_token(settings.var_dir, create=create)
        except OSError as exc:
            # A var directory that is a file, on a read-only or full file system: one line, exit 2, not a
            # traceback (an outside audit's, `sesame keys init`).
            raise ConfigurationError(
                f"the development token under {settings.var_dir} (SESAME_VAR_DIR) cannot be made: "
                f"{exc.strerror or type(exc).__name__}"
            ) from None
        return replace(
            dev, omit_copyable=settings.hsm_omit_copyable, current_keys_every=settings.hsm_key_reread
        )
    return Pkcs11Config(
        module=settings.hsm.module,
        token_label=settings.hsm.token_label,
        pin=settings.hsm.pin,
        omit_copyable=settings.hsm_omit_copyable,
        current_keys_every=settings.hsm_key_reread,
    )


async def _opened(
    settings: Settings, stack: contextlib.AsyncExitStack, *, warn_copyable: bool
) -> tuple[Pkcs11KeyStore, RedisState, KeyAudit]:
    """The HSM session and the Redis state of one process its supervisor readied, closed with `stack`;
    the keys checked first: the token must be the one Redis's data was written with, its keys working."""
    redis_url = settings.redis_url
    if redis_url is None:
        raise ConfigurationError("a worker needs SESAME_REDIS_URL (its supervisor sets it)")
    config = hsm_config(settings)
    keys = await asyncio.to_thread(Pkcs11KeyStore.open, config)
    stack.callback(keys.close)
    boot = KeyBootPolicy(
        create_missing=settings.hsm is None,
        start_afresh=settings.keys_start_afresh,
        warn_copyable=warn_copyable,
    )
    audit = await boot_keys(config, keys, redis_url, boot, datetime.now(UTC))
    ledger = RedisKeyLedger.from_url(redis_url)  # connects at its first use: a rotation picked up
    stack.push_async_callback(ledger.close)
    keys.before_rotated_keys_are_used(functools.partial(record_rotation, config, keys, ledger))
    store = RedisState.from_url(
        redis_url, shards=settings.redis_shards, retention=settings.retention, noops=settings.noops
    )
    stack.push_async_callback(store.close)
    await store.check_layout()  # keys laid out in another shard count would not be found (decision 0044)
    await store.check()  # and a Redis that evicts keys when full loses facts: refused
    return keys, store, audit


@contextlib.asynccontextmanager
async def runtime(settings: Settings, heard: Heard = Heard.OWN_STEPS) -> AsyncIterator[Runtime]:
    """Open the adapters of one worker (Redis and the token its supervisor readied), yield the flows; its
    dispatchers hear of new SMS as `heard` says: from its own steps (a `sesame serve` worker), or by
    watching every shard (`sesame dispatch`, which queues nothing itself; decision 0060)."""
    async with contextlib.AsyncExitStack() as stack:
        # A serve worker: its supervisor warned of copyable keys.
        keys, store, audit = await _opened(settings, stack, warn_copyable=heard is not Heard.OWN_STEPS)
        outbox = store.outbox(heard)
        stack.push_async_callback(outbox.close)
        clock = SystemClock()
        metrics = Metrics()
        metrics.hsm_copyable_keys.set(len(audit.copyable))
        metrics.zero_failures("store", call_names())  # every script's and read's, from 0 (decision 0119)
        reports = store.metered(DependencyMeter(metrics, "store"))  # delivery reports, timed as traffic
        watch = SmsWatch(settings.sms_gateway, providers=settings.sms_providers)
        meter = ProviderMeter(metrics, watch, settings.sms_providers)
        sms = await stack.enter_async_context(sms_gateway(settings, clock, reports, meter))
        sms = replace(sms, watch=watch)
        sim_swap = sim_swap_check(settings.risk.sim_swap, clock)
        if sim_swap is not None:
            stack.push_async_callback(sim_swap.close)
        # No /metrics here: the supervisor serves the sum of its workers' metrics (docs/decisions/0021).
        running = wire(
            keys=keys,
            store=store,
            outbox=outbox,
            units=outbox.send_units(),
            sms=sms,
            clock=clock,
            policy=settings.policy,
            lifecycle=settings.lifecycle,
            metrics=metrics,
            risk=RiskWiring(settings.risk, sim_swap),
            retention=settings.evidence_retention,
            archive=JournalArchive(settings.journal_archive_dir),
            evidence_max_leaves=settings.evidence_max_leaves,
            evidence_reads_at_once=settings.evidence_reads_at_once,
            max_tries=settings.dispatch.max_tries,
            notice_max_age=settings.dispatch.notice_max_age,
            settle_within=settings.dispatch.claim_idle / 2,
            # The steps that queue an SMS wake this worker's dispatchers, if it runs any (decision 0060).
            nudge=outbox.nudge() if heard is Heard.OWN_STEPS and settings.dispatch.loops else NO_NUDGE,
        )
        # The clock checked before a loop takes anything (a serve worker's health watcher checks it again
        # before its port opens): a clock out of step holds the loops (decision 0104).
        with contextlib.suppress(ClockOff, StoreUnavailable):
            await running.gate.check()
        # Stopped first on the way out (after the server drained): a loop finishes its batch.
        loops = DispatchLoops(
            running.dispatcher, outbox, metrics, clock, settings.dispatch, clock_watch=running.gate
        )
        loops.start()
        stack.push_async_callback(loops.stop)
        lag = LoopLagMonitor(metrics.event_loop_metrics())
        lag.start()
        stack.push_async_callback(lag.stop)
        yield running


@dataclass(frozen=True, slots=True)
class RiskWiring:
    """The risk rules' settings and the operator's SIM-swap API (None: off) (docs/risk.md)."""

    settings: RiskSettings = field(default_factory=RiskSettings)
    sim_swap: SimSwapCheck | None = None


def sim_swap_check(settings: SimSwapSettings | None, clock: Clock) -> CamaraSimSwap | None:
    """The operator's CAMARA SIM Swap API when configured."""
    if settings is None:
        return None
    from sesame.clients.camara_sim_swap import CamaraConfig, CamaraSimSwap  # noqa: PLC0415 (httpx: see above)

    config = CamaraConfig(
        settings.url,
        settings.token,
        timeout=settings.timeout.total_seconds(),
        max_age=settings.max_age,
        cache_for=settings.cache_for,
    )
    return CamaraSimSwap(config, clock)


@contextlib.asynccontextmanager
async def sms_gateway(
    settings: Settings, clock: SystemClock, store: State, observer: ProviderObserver | None = None
) -> AsyncIterator[Gateway]:
    """The providers in the settings' order, each behind its retries and circuit breaker, behind one
    gateway that fails over from each to the next (one provider too: it still gets both).

    Kannel brings its delivery-report listener, SMPP its bound session; reports go to `store`.
    """
    async with contextlib.AsyncExitStack() as stack:
        providers = [
            Provider(
                name, await _provider(name, settings, clock, store, stack, observer=observer or UNOBSERVED)
            )
            for name in settings.sms_providers
        ]
        gateway = FailoverSmsGateway(providers, reliability(settings.sms_reliability), observer)
        yield Gateway(settings.sms_gateway, gateway, breakers=gateway.breaker_states)


def reliability(settings: ReliabilitySettings) -> Reliability:
    """The retry policy and breaker thresholds from the settings."""
    return Reliability(
        retry=RetryPolicy(retries=settings.retries, base_seconds=settings.backoff_seconds),
        breaker=BreakerSettings(settings.breaker_failures, settings.breaker_open_seconds),
    )


async def _provider(  # noqa: PLR0913 (what each provider may need: its settings and where reports go)
    name: str,
    settings: Settings,
    clock: SystemClock,
    store: State,
    stack: contextlib.AsyncExitStack,
    *,
    observer: ProviderObserver,
) -> SmsGateway:
    if name == "kannel" and settings.kannel is not None:
        from sesame.clients.sms_kannel import KannelSmsGateway  # noqa: PLC0415 (httpx: see the imports)

        callback = None
        if settings.dlr is not None:
            callback = await _dlr_listener(settings.dlr, store, clock, stack, observer)
        kannel = KannelSmsGateway(_kannel_config(settings.kannel, callback), clock)
        stack.push_async_callback(kannel.close)
        _log.info("SMS through Kannel at %s as %r", settings.kannel.url, settings.kannel.sender)
        return kannel
    if name == "smpp" and settings.smpp is not None:

        async def record(
            challenge_id: str, state: DeliveryState, provider_ref: str, provider_id: str
        ) -> None:
            # Counted once it moved its message: a receipt the SMSC sends again is not another SMS's.
            if await store.challenges.record_delivery(
                challenge_id, state, provider_ref, clock.now(), provider_id
            ):
                observer.reported("smpp", state)

        # The SMSC's message ids in Redis too: a receipt after a restart, or on another worker's session,
        # still finds its challenge (decision 0030).
        ids = None
        if settings.redis_url is not None:
            ids = RedisProviderIds.from_url(settings.redis_url)
            stack.push_async_callback(ids.close)
        smpp = SmppSmsGateway(
            smpp_config(settings.smpp, settings.sms_reliability),
            clock,
            record,
            ids,
            on_bind=lambda bound: observer.bind_changed("smpp", bound),
        )
        await smpp.start()
        stack.push_async_callback(smpp.close)
        _log.info(
            "SMS through SMPP at %s:%d as %r", settings.smpp.host, settings.smpp.port, settings.smpp.source
        )
        return smpp
    if name == "console":
        return ConsoleSmsGateway(settings.sms_console_file, clock, settings.environment)
    raise ConfigurationError(f"SMS provider {name!r} has no settings")


def _descriptors_kept(settings: Settings) -> int:
    """Descriptors a worker keeps besides its gRPC connections' and RESERVED: the Redis connections of the
    calls in flight, and the delivery-report listener's connections when reports are on."""
    reports = settings.dlr.max_connections if settings.dlr is not None else 0
    return settings.max_concurrent_rpcs + reports


def smpp_config(smpp: SmppSettings, retries: ReliabilitySettings) -> SmppConfig:
    """The SMPP gateway's configuration from the settings; a later part refused before acceptance is asked
    again as the reliability settings retry a message."""
    return SmppConfig(
        host=smpp.host,
        port=smpp.port,
        system_id=smpp.system_id,
        password=smpp.password,
        source=Address(smpp.source_ton, smpp.source_npi, smpp.source),
        system_type=smpp.system_type,
        window=smpp.window,
        rate=float(smpp.rate),
        timing=Timing(
            connect=smpp.connect_timeout, response=smpp.response_timeout, keepalive=smpp.enquire_link
        ),
        part_retry=reliability(retries).retry,
    )


async def _dlr_listener(
    dlr: DlrSettings,
    store: State,
    clock: SystemClock,
    stack: contextlib.AsyncExitStack,
    observer: ProviderObserver,
) -> DlrCallback:
    """Start listening for Kannel's delivery reports; the callback URL names the port actually bound."""
    from sesame.clients.http_listener import HttpListener  # noqa: PLC0415 (aiohttp: see the imports)
    from sesame.clients.kannel_dlr import DLR_PATH, KannelDeliveryReports  # noqa: PLC0415
    from sesame.clients.sms_kannel import DlrCallback  # noqa: PLC0415

    reports = KannelDeliveryReports(dlr.token, store.challenges, clock, observer)
    listener = HttpListener(DLR_PATH, reports.receive, max_connections=dlr.max_connections)
    # Every worker listens, sharing the port its supervisor claimed: any of them records a report.
    await listener.start(dlr.address, reuse_port=True)
    stack.push_async_callback(listener.close)
    base_url = dlr.public_url or f"http://{dlr.address.rpartition(':')[0]}:{listener.port}"
    _log.info("delivery reports on port %d, called back at %s%s", listener.port, base_url, DLR_PATH)
    return DlrCallback(base_url, dlr.token)


def _kannel_config(kannel: KannelSettings, callback: DlrCallback | None) -> KannelConfig:
    from sesame.clients.sms_kannel import KannelConfig  # noqa: PLC0415 (httpx: see the imports)

    return KannelConfig(
        url=kannel.url,
        username=kannel.username,
        password=kannel.password,
        sender=kannel.sender,
        timeout=kannel.timeout,
        dlr=callback,
    )


def wire(  # noqa: PLR0913 (keyword-only: one argument per adapter and policy)
    *,
    keys: Pkcs11KeyStore,
    store: RedisState,
    outbox: Outbox,
    sms: Gateway,
    clock: SystemClock,
    policy: ChallengePolicy,
    lifecycle: LifecyclePolicy,
    metrics: Metrics,
    risk: RiskWiring | None = None,
    retention: timedelta = RETENTION,
    archive: JournalArchive | None = None,
    evidence_max_leaves: int = MAX_SEALED_LEAVES,
    evidence_reads_at_once: int = FIRST_PAGES_AT_ONCE,
    max_tries: int = 1,
    notice_max_age: timedelta = timedelta(days=1),
    units: SendUnits | None = None,
    settle_within: timedelta = DEFAULT_SETTLE_WITHIN,
    nudge: OutboxNudge = NO_NUDGE,
    reference: ReferenceClock | None = None,
) -> Runtime:
    """The flows over metered views of the adapters, telling the metrics what they decided; health probes
    the bare ones (a probe is not traffic). No sealer: `sesame serve`'s sealer process builds its own
    (`journal_sealer`, decision 0085); `retention` is how long the evidence is kept; `clock` is watched
    against `reference` (None: Redis's clock, decision 0104)."""
    # Each adapter times its calls at its one funnel (docs/decisions/0020, 0026): no wrapper per adapter.
    metered_keys = TracedKeyStore(keys.metered(DependencyMeter(metrics, "hsm")))
    metered_store = store.metered(DependencyMeter(metrics, "store"), nudge)
    tally = MetricsTally(metrics)
    risk = risk or RiskWiring()
    risk_flows = RiskFlows(
        clock=clock,
        policy=RiskPolicy(risk.settings.rules, risk.settings.limits),
        sim_swap=risk.sim_swap,
        meter=RiskMetrics(metrics.registry),
    )
    recent = RecentCodes(clock)  # Start's code, for this worker's dispatcher (docs/decisions/0025)
    sealed = metered_store.sealed_journal()  # its reads timed at the store's funnel
    # A challenge's journal is read from Redis and the archive as one (docs/decisions/0037).
    journals = ChallengeJournals(ArchivedJournals(sealed, archive), sealed, metered_store.journal)
    proof_state = State(
        metered_store.users,
        metered_store.clients,
        metered_store.challenges,
        metered_store.proofs,
        journals,
        metered_store.send_units,
    )
    proofs = ProofFlows(
        keys=metered_keys, store=proof_state, clock=clock, issuer=policy.bank_name, verifies=proof_verifies
    )
    clock_watch = ClockWatch(clock, reference or store, metrics)
    sms_watch = sms.watch or SmsWatch(sms.name)
    if sms.breakers is not None:
        sms_watch.follow(sms.breakers)
    metered_sms = MeteredSmsGateway(sms.gateway, metrics, sms.name, sms_watch)
    return Runtime(
        challenges=ChallengeFlows(
            keys=metered_keys,
            store=metered_store,
            sms=metered_sms,
            clock=clock,
            policy=policy,
            proofs=proofs,
            tally=tally,
            risk=risk_flows,
            recent=recent,
        ),
        enrollment=EnrollmentFlows(store=metered_store, clock=clock, policy=lifecycle, tally=tally),
        proofs=proofs,
        clock=clock,
        probes={"state store": store, "key store": keys, "clock": clock_watch.probe},
        metrics=metrics,
        dispatcher=Dispatcher(
            keys=metered_keys,
            outbox=outbox,
            sms=metered_sms,
            clock=clock,
            bank_name=policy.bank_name,
            recent=recent,
            templates=policy.sms_templates,
            units=units or metered_store.send_units,  # the outbox's connections, in a server (0046)
            max_tries=max_tries,
            notice_max_age=notice_max_age,
            hold_grace=policy.send_budget.hold_grace,
            settle_within=settle_within,
        ),
        advisories={SMS_HEALTH_SERVICE: sms_watch.healthy},
        seals=ChallengeSeals(store.sealed_journal(), keys, archive),
        user_evidence=UserEvidenceReader(
            index=store.evidence_index(),
            journal=store.sealed_journal(),
            notes=store.health_notes(),
            keys=keys,
            archive=archive,
            max_leaves=evidence_max_leaves,
            at_once=evidence_reads_at_once,
        ),
        health_notes=HealthNoter(store.health_notes(), clock, retention),
        gate=clock_watch,
        layout=store.layout,
    )


def journal_sealer(  # noqa: PLR0913 (what the sealer is made of; its clock's watch keyword-only)
    store: RedisState,
    keys: Pkcs11KeyStore,
    archive: JournalArchive,
    meter: SealerGauges,
    timing: SealerTiming | None,
    *,
    clock_watch: ClockWatch | None = None,
) -> Sealer:
    """The journal's sealer over `store`'s journal, signing with `keys`, archiving into `archive`; with
    `clock_watch`, sealing only while its clock is in step with Redis's (decision 0104)."""
    return Sealer(
        store.sealed_journal(),
        keys,
        archive,
        timing,
        meter=meter,
        index=store.evidence_index(),
        clock_watch=clock_watch,
    )


def transport_summary(transport: TransportSettings) -> str:
    """How the gRPC port is protected, in a few words for the boot log."""
    if transport.tls is None:
        return "plaintext"
    if transport.tls.client_ca is None:
        return "TLS, callers not identified"
    return "mTLS, client certificates required"


def log_serving(settings: Settings) -> None:
    """The boot line of `sesame serve`: where, how protected, which gateway, how many workers."""
    _log.info(
        "sesame serving gRPC on %s (%s, %s) with %d worker%s; SMS through the %s gateway",
        settings.grpc_addr,
        settings.environment,
        transport_summary(settings.transport),
        settings.workers,
        "" if settings.workers == 1 else "s",
        settings.sms_gateway,
    )
    if settings.transport.health_addr is not None:
        _log.info("health only, in plaintext, on %s", settings.transport.health_addr)
    log_open_policy(settings.transport)


def log_open_policy(transport: TransportSettings) -> None:
    """Say at boot when any caller may call any RPC (production refuses to start that way)."""
    if transport.policy is None:
        _log.warning("no SESAME_AUTHZ_POLICY_FILE: every caller may call every RPC (development only)")


async def serve(settings: Settings, ready: Callable[[], None], index: int = 0) -> None:
    """Worker `index`: serve on the ports its supervisor claimed until SIGTERM or SIGINT, then drain calls in
    flight and stop the adapters. `ready` is called once the port serves."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with runtime(settings) as running:
        if running.health_notes is not None:
            # What this worker's health rounds saw while their notes could not be written, for the next one.
            # By host too: a var/ shared between hosts must not hand one host's note to another's worker.
            pending = f"worker-{index}@{socket.gethostname()}.unwritten"
            running.health_notes.pending_in(settings.var_dir / "health" / pending)
        server = await GrpcServer.start(
            settings.grpc_addr,
            challenges=running.challenges,
            enrollment=running.enrollment,
            proofs=running.proofs,
            clock=running.clock,
            probes=running.probes,
            health_interval=settings.health_interval,
            metrics=running.metrics,
            transport=settings.transport,
            advisories=running.advisories,
            serving=Serving(
                max_concurrent_rpcs=settings.max_concurrent_rpcs,
                reuse_port=True,
                max_connections=connection_bound(settings.max_connections, _descriptors_kept(settings)),
                handshake_timeout=settings.handshake_timeout,
                connection_age=settings.connection_age,
                connection_age_grace=settings.connection_age_grace,
                min_client_ping_interval=settings.min_client_ping_interval,
                keepalive=settings.keepalive,
                keepalive_timeout=settings.keepalive_timeout,
            ),
            seals=running.seals,
            user_evidence=running.user_evidence,
            health_notes=running.health_notes,
            gate=running.call_gate,
        )
        _log.debug("%d objects of boot frozen out of the garbage collector", freeze_boot_heap())
        ready()
        await stop.wait()
        _log.info("draining (grace %.0f s)", settings.shutdown_grace)
        await server.stop(settings.shutdown_grace)
        if running.health_notes is not None:
            running.health_notes.stopped()
    _log.info("stopped")


async def seal(settings: Settings, ready: Callable[[], None]) -> None:
    """The sealer process of `sesame serve`: the journal's sealer alone (no port, no dispatcher) until
    SIGTERM or SIGINT, then the lease let go. `ready` is called once it runs.

    The lease holder's sealing took 100-250 ms of a loop each second at 150 flows a second, in slices of
    6-25 ms: in a worker, every call on that loop waited behind them (decision 0085).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        keys, store, _ = await _opened(settings, stack, warn_copyable=False)
        archive = JournalArchive(settings.journal_archive_dir)
        timing = SealerTiming(retention=settings.evidence_retention, busy_interval=SEALER_BUSY_INTERVAL)
        # Its two gauges only: the supervisor's scrape sums every process's (decision 0021).
        gauges, watch = SealerGauges(CollectorRegistry()), ClockWatch(SystemClock(), store)
        sealer = journal_sealer(store, keys, archive, gauges, timing, clock_watch=watch)
        sealing = asyncio.create_task(sealer.run(stop))
        _log.debug("%d objects of boot frozen out of the garbage collector", freeze_boot_heap())
        ready()
        await sealing
    _log.info("stopped")


async def dispatch(settings: Settings) -> None:
    """`sesame dispatch`: dispatch loops alone, no gRPC port, until SIGTERM or SIGINT (docs/decisions/0025).

    Same Redis (SESAME_REDIS_URL: a dispatcher cannot share `sesame serve`'s embedded one otherwise), token
    and gateway settings as the workers; at least one loop, whatever SESAME_DISPATCHERS says (that setting
    may be 0 so that the workers leave the sending to this process).
    """
    if settings.redis_url is None:
        raise ConfigurationError(
            "sesame dispatch needs SESAME_REDIS_URL, the Redis its `sesame serve` uses (it starts no Redis)"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loops = max(1, settings.dispatch.loops)
    settings = dataclasses.replace(settings, dispatch=dataclasses.replace(settings.dispatch, loops=loops))
    async with runtime(settings, Heard.WATCHING) as running:
        # Its own /metrics (SESAME_METRICS_ADDR): what it sends, fails and waits for is scraped like a
        # worker's, else an outbox served by `sesame dispatch` alone would be invisible (decision 0034).
        endpoint = None
        if settings.metrics_addr is not None:
            endpoint = MetricsEndpoint(running.metrics.registry, settings.metrics_addr)
            _log.info(
                "metrics on http://%s:%d/metrics", settings.metrics_addr.rpartition(":")[0], endpoint.port
            )
        # No health watcher here: the clock is checked as often on its own (decision 0104).
        watching = asyncio.create_task(running.gate.watch(settings.health_interval), name="clock-watch")
        try:
            _log.info("dispatching the SMS outbox with %d loop%s", loops, "" if loops == 1 else "s")
            await stop.wait()
            _log.info("stopping: each loop finishes its batch")
        finally:
            watching.cancel()
            await asyncio.wait([watching])
            if endpoint is not None:
                endpoint.close()
    _log.info("stopped")

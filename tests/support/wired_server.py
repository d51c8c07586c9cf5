"""The composition root's wiring (metered adapters) behind a real gRPC server, over the tests' adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sesame.clients.redis_outbox_bell import Heard
from sesame.clients.redis_store import RedisState
from sesame.clients.sms_console import ConsoleSmsGateway
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.app import Gateway, RiskWiring, Runtime, journal_sealer, wire
from sesame.server.clock_watch import SystemClock
from sesame.server.dispatch_loop import DispatchLoops, DispatchSettings
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.lifecycle import LifecyclePolicy
from sesame.server.domain.ports import Clock
from sesame.server.grpc.server import GrpcServer
from sesame.server.journal_archive import JournalArchive
from sesame.server.metrics import Metrics
from sesame.server.sealer import Sealer
from sesame.server.transport_settings import PLAINTEXT, TransportSettings
from tests.fakes.clock import ShiftedClock


class ShiftedReference:
    """Redis's clock as far ahead as the test advanced time (`ShiftedClock.shift`), not its skew."""

    def __init__(self, store: RedisState, clock: ShiftedClock) -> None:
        self._store = store
        self._clock = clock

    async def reference_now(self) -> datetime:
        # The shift at the call and at the answer, as the clock watch read its clock just before and reads it
        # just after: a test advancing time while Redis answered (a health round straddling a 30-day step of
        # test_risk_scenarios.py) read as a worker 15 days off: calls were refused UNAVAILABLE for a round.
        at_call = self._clock.shift
        redis_now = await self._store.reference_now()
        return redis_now + (at_call + self._clock.shift) / 2


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """What a test may change of the server it starts."""

    policy: ChallengePolicy = field(default_factory=ChallengePolicy)
    lifecycle: LifecyclePolicy = field(default_factory=LifecyclePolicy)
    health_interval: float = 1.0
    transport: TransportSettings = PLAINTEXT
    clock: Clock | None = None  # the server's time; None: the system clock
    sms: Gateway | None = None  # the SMS gateway; None: the console, writing to the test's SMS file
    risk: RiskWiring | None = None  # the risk rules and SIM-swap API; None: the default rules, no SIM swap
    dispatch: DispatchSettings = field(
        default_factory=DispatchSettings
    )  # the outbox's dispatch loops beside the server
    # Journal health notes (decision 0036), as `sesame serve` does; off by default like the sealer's loop (a
    # test steps the sealer by hand): a test that counts what a call writes sees only what the call wrote.
    health_notes: bool = False


@dataclass(frozen=True, slots=True)
class Wired:
    """A started server on a free loopback port and the runtime behind it."""

    server: GrpcServer
    running: Runtime
    sealer: Sealer  # the journal's, as the sealer process builds it; a test steps it by hand (0027, 0085)


async def start_wired(
    keys: Pkcs11KeyStore, store: RedisState, sms_file: Path, options: ServerOptions | None = None
) -> Wired:
    """Wire the flows as `sesame serve` does (console SMS to `sms_file`) and start serving them."""
    chosen = options or ServerOptions()
    clock = chosen.clock or SystemClock()
    outbox = store.outbox(Heard.OWN_STEPS)  # as a worker: woken by its own steps (decision 0060)
    archive = JournalArchive(sms_file.parent / "journal-archive")
    running = wire(
        keys=keys,
        store=store,
        outbox=outbox,
        units=outbox.send_units(),
        sms=chosen.sms or Gateway("console", ConsoleSmsGateway(sms_file, clock, "development")),
        clock=clock,
        policy=chosen.policy,
        lifecycle=chosen.lifecycle,
        metrics=Metrics(),
        risk=chosen.risk,
        archive=archive,
        max_tries=chosen.dispatch.max_tries,
        notice_max_age=chosen.dispatch.notice_max_age,
        nudge=outbox.nudge(),
        # Time a test advances passes for Redis's clock too, as the clock watch reads it (decision 0104).
        reference=ShiftedReference(store, clock) if isinstance(clock, ShiftedClock) else None,
    )
    server = await GrpcServer.start(
        "127.0.0.1:0",
        challenges=running.challenges,
        enrollment=running.enrollment,
        proofs=running.proofs,
        clock=clock,
        probes=running.probes,
        health_interval=chosen.health_interval,
        metrics=running.metrics,
        transport=chosen.transport,
        advisories=running.advisories,
        seals=running.seals,
        user_evidence=running.user_evidence,
        health_notes=running.health_notes if chosen.health_notes else None,
        gate=running.call_gate,
    )
    # As a `sesame serve` worker: the dispatch loops run beside the server and stop after it.
    loops = DispatchLoops(
        running.dispatcher, outbox, running.metrics, clock, chosen.dispatch, clock_watch=running.gate
    )
    loops.start()
    server.also_stop(loops.stop)
    server.also_stop(outbox.close)
    return Wired(server, running, journal_sealer(store, keys, archive, running.metrics.journal, None))

"""A real Sésame gRPC server on 127.0.0.1 with real Redis, the SoftHSM token and the console SMS file."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.camara_sim_swap import CamaraConfig, CamaraSimSwap
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.app import Gateway, RiskWiring
from sesame.server.dispatch_loop import DispatchSettings
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.metrics import Metrics
from sesame.server.sealer import Sealer
from tests.fakes.clock import ShiftedClock
from tests.support.camara_sim_swap import TOKEN, Operator, camara_operator
from tests.support.serve_process import ServeProcess, start_serve
from tests.support.wired_server import ServerOptions, start_wired


@dataclass
class Live:
    """A running server and what a test needs to talk to it and to look behind it."""

    channel: grpc.aio.Channel
    auth: auth_grpc.AuthenticationServiceStub
    enrol: enrol_grpc.EnrollmentServiceStub
    sms_file: Path
    store: RedisState
    metrics: Metrics
    clock: ShiftedClock = field(default_factory=ShiftedClock)  # the server's clock: a test may move it
    address: str = ""  # host:port of the server, for the blocking clients (`sesame evidence`)
    sealer: Sealer | None = None  # the journal's sealer, which a test runs step by step (decision 0027)


@pytest.fixture(name="operator")
def _operator() -> Iterator[Operator]:
    """A local mobile operator answering the CAMARA SIM Swap API on 127.0.0.1."""
    with camara_operator() as operator:
        yield operator


@contextlib.asynccontextmanager
async def live_with_sim_swap(  # noqa: PLR0913 (what the server is made of)
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    tmp_path: Path,
    operator: Operator,
    wait: float,
    *,
    sms: Gateway | None = None,
) -> AsyncIterator[Live]:
    """A real server whose risk rules ask `operator`'s SIM Swap API, waiting at most `wait` seconds (and
    sending through `sms`, else the console writing to the test's SMS file)."""
    clock = ShiftedClock()
    sim_swap = CamaraSimSwap(CamaraConfig(operator.url, TOKEN, timeout=wait), clock)
    sms_file = tmp_path / "sms.jsonl"
    options = ServerOptions(clock=clock, risk=RiskWiring(sim_swap=sim_swap), sms=sms)
    wired = await start_wired(keystore, redis_store, sms_file, options)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{wired.server.port}")
    try:
        yield Live(
            channel=channel,
            auth=auth_grpc.AuthenticationServiceStub(channel),
            enrol=enrol_grpc.EnrollmentServiceStub(channel),
            sms_file=sms_file,
            store=redis_store,
            metrics=wired.running.metrics,
            clock=clock,
            address=f"127.0.0.1:{wired.server.port}",
            sealer=wired.sealer,
        )
    finally:
        await channel.close()
        await wired.server.stop(0)
        await sim_swap.close()


@pytest.fixture
def policy() -> ChallengePolicy:
    """The server's challenge limits: the defaults, unless a test parametrizes `policy`."""
    return ChallengePolicy()


@pytest.fixture
def dispatch() -> DispatchSettings:
    """The dispatch loops beside the server: the defaults, unless a test parametrizes `dispatch`."""
    return DispatchSettings()


@pytest.fixture
def health_notes() -> bool:
    """Whether the server journals health notes (decision 0036): no, unless a test parametrizes it."""
    return False


@pytest.fixture
def health_interval() -> float:
    """Seconds between two health rounds (each checks the clock, decision 0104): 1, unless parametrized."""
    return 1.0


@pytest.fixture
async def live(  # noqa: PLR0913, PLR0917 (fixtures, by name)
    redis_store: RedisState,
    keystore: Pkcs11KeyStore,
    tmp_path: Path,
    policy: ChallengePolicy,
    dispatch: DispatchSettings,
    health_notes: bool,  # noqa: FBT001 (a fixture)
    health_interval: float,
) -> AsyncIterator[Live]:
    """Start the server on a free loopback port, with a fresh Redis database and SMS file."""
    clock = ShiftedClock()
    options = ServerOptions(
        policy=policy,
        clock=clock,
        dispatch=dispatch,
        health_notes=health_notes,
        health_interval=health_interval,
    )
    async with live_on(keystore, redis_store, tmp_path / "sms.jsonl", clock, options) as running:
        yield running


@contextlib.asynccontextmanager
async def live_on(
    keystore: Pkcs11KeyStore, store: RedisState, sms_file: Path, clock: ShiftedClock, options: ServerOptions
) -> AsyncIterator[Live]:
    """The server wired as `sesame serve` wires it, on `store`, with `options` (whose clock is `clock`), and
    its stubs on one channel; stopped at the end (the store is the caller's)."""
    wired = await start_wired(keystore, store, sms_file, options)
    server, running = wired.server, wired.running
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Live(
            channel=channel,
            auth=auth_grpc.AuthenticationServiceStub(channel),
            enrol=enrol_grpc.EnrollmentServiceStub(channel),
            sms_file=sms_file,
            store=store,
            metrics=running.metrics,
            clock=clock,
            address=f"127.0.0.1:{server.port}",
            sealer=wired.sealer,
        )
    finally:
        await channel.close()
        await server.stop(0)


@dataclass(frozen=True)
class Served:
    """A running `sesame serve`: its gRPC address, var/ directory and metrics port."""

    address: str
    var: Path
    metrics_port: int


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One `sesame serve` for the tests that only talk to it (embedded Redis and dev token)."""
    var = tmp_path_factory.mktemp("var")
    serving = start_serve(var)
    assert serving.metrics_port is not None
    yield Served(serving.address, var, serving.metrics_port)
    serving.process.terminate()
    serving.process.wait(timeout=30)


@pytest.fixture(name="other_worker")
async def _other_worker(live: Live, keystore: Pkcs11KeyStore) -> AsyncIterator[Live]:
    """A second server on the same Redis, SoftHSM token and SMS file: another worker."""
    wired = await start_wired(keystore, live.store, live.sms_file)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{wired.server.port}")
    try:
        yield Live(
            channel=channel,
            auth=auth_grpc.AuthenticationServiceStub(channel),
            enrol=enrol_grpc.EnrollmentServiceStub(channel),
            sms_file=live.sms_file,
            store=live.store,
            metrics=wired.running.metrics,
        )
    finally:
        await channel.close()
        await wired.server.stop(0)


@pytest.fixture
def stopped() -> Iterator[list[ServeProcess]]:
    """Processes a test started (`sesame serve`, `sesame dispatch`), stopped (or killed) at its end."""
    started: list[ServeProcess] = []
    yield started
    for each in started:
        if each.process.poll() is None:
            each.process.terminate()
            try:
                each.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                each.process.kill()

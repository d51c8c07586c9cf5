"""`sesame serve`: the supervisor process, which serves nothing itself (docs/decisions/0021).

In order: claim the ports (nobody listens there, no other `sesame serve` holds them), start the embedded
redis-server when no Redis is configured, make the keys ready once (the development token, the key
ledger, `--start-afresh`: never in several processes at once), serve /metrics as the sum of the workers',
start the workers and the sealer process (decision 0085) and wait until each runs. Then restart one that
dies, and on SIGTERM or SIGINT drain them all within the grace period (the workers, then the sealer), and
stop Redis last.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from sesame.clients.redis_connect import ready as ready_redis
from sesame.clients.redis_server import EmbeddedRedis
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.app import hsm_config, log_serving
from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError
from sesame.server.key_boot import KeyBootPolicy, boot_keys
from sesame.server.metrics import MetricsEndpoint, WorkersServing
from sesame.server.metrics_dir import MetricsDirectory
from sesame.server.port_claim import PortClaim
from sesame.server.supervisor import Backoff, Supervisor
from sesame.server.workers import WorkerLaunch, WorkerPool

_log = logging.getLogger("sesame")

# Restarts of a child (the embedded redis-server, a worker) that keep failing are retried every 0.5, 1, 2,
# 4, 8, 10, 10, ... s.
RESTART_BACKOFF = Backoff(first=0.5, cap=10.0)


async def serve(settings: Settings) -> None:
    """Supervise the workers until SIGTERM or SIGINT, then drain them and stop Redis."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    for link in settings.clear_links:  # accepted in clear by SESAME_PRIVATE_NETWORK=1: said (decision 0166)
        _log.warning(
            "%s crosses the network in clear: accepted, SESAME_PRIVATE_NETWORK=1 says it is protected", link
        )
    with PortClaim() as claim:
        settings = _claim_ports(settings, claim)
        async with contextlib.AsyncExitStack() as stack:
            redis_url = await _redis(settings, stack)
            hsm = await _ready_keys(settings, redis_url)
            metrics_dir, registry, workers = _metrics(settings, stack)
            launch = WorkerLaunch(
                env=_worker_env(settings, redis_url, hsm, metrics_dir),
                on_exit=lambda pid: _forget(pid, workers),
                hang_after=settings.worker_hang,
            )
            pool = WorkerPool(settings.workers, launch)
            if registry is not None:
                registry.register(WorkersServing(pool.serving, settings.workers))
            stack.push_async_callback(asyncio.to_thread, pool.drain, settings.shutdown_grace)
            if await _started(pool, stop):
                for worker in pool.processes:
                    restarts = Supervisor(
                        worker.name,
                        worker,
                        interval=settings.health_interval,
                        backoff=RESTART_BACKOFF,
                    )
                    restarts.start()
                    # Pushed after the drain, so it runs before it: no restart races the drain.
                    stack.push_async_callback(restarts.stop)
                log_serving(settings)
                await stop.wait()
                _log.info("draining %d workers (grace %.0f s)", settings.workers, settings.shutdown_grace)
            else:
                _log.info("stopped while the workers started")
    _log.info("stopped")


async def _started(pool: WorkerPool, stop: asyncio.Event) -> bool:
    """Start the pool; False when SIGTERM or SIGINT came meanwhile (the workers started are then stopped by
    the drain). ConfigurationError when a worker did not start of itself."""

    async def stop_starting() -> None:
        await stop.wait()
        pool.stop_starting()

    stopping = asyncio.ensure_future(stop_starting())
    try:
        await asyncio.to_thread(pool.start)
    except ConfigurationError:
        if not stop.is_set():
            raise
    finally:
        stopping.cancel()
    return not stop.is_set()


def _claim_ports(settings: Settings, claim: PortClaim) -> Settings:
    """Claim the ports every worker binds; the settings with the ports picked for a port 0."""
    grpc_addr = claim.claim(settings.grpc_addr, "SESAME_GRPC_ADDR")
    transport = settings.transport
    if transport.health_addr is not None:
        transport = dataclasses.replace(
            transport, health_addr=claim.claim(transport.health_addr, "SESAME_HEALTH_ADDR")
        )
    dlr = settings.dlr
    # Port 0: each worker listens on a port of its own and names it in its callback URL.
    if dlr is not None and not dlr.address.endswith(":0"):
        dlr = dataclasses.replace(dlr, address=claim.claim(dlr.address, "SESAME_DLR_ADDR"))
    return dataclasses.replace(settings, grpc_addr=grpc_addr, transport=transport, dlr=dlr)


async def _redis(settings: Settings, stack: contextlib.AsyncExitStack) -> str:
    """The configured Redis, or an embedded redis-server started (and supervised) for all the workers."""
    if settings.redis_url is not None:
        await ready_redis(settings.redis_url)  # a cluster must say cluster_state:ok (decision 0047)
        return settings.redis_url
    embedded = EmbeddedRedis(settings.var_dir / "redis")
    await asyncio.to_thread(embedded.start)
    stack.callback(embedded.stop)
    # Pushed after `stop`, so it runs before it: no restart races the final stop.
    supervisor = Supervisor(
        "embedded redis-server", embedded, interval=settings.health_interval, backoff=RESTART_BACKOFF
    )
    supervisor.start()
    stack.push_async_callback(supervisor.stop)
    _log.info("embedded redis-server started on %s", embedded.url)
    return embedded.url


async def _ready_keys(settings: Settings, redis_url: str) -> Pkcs11Config:
    """Make the keys ready once, before any worker: the token checked against the ledger, keys made if
    the policy allows, the self-test. The session is closed again: each worker opens its own."""
    config = await asyncio.to_thread(hsm_config, settings)
    keys = await asyncio.to_thread(Pkcs11KeyStore.open, config)
    try:
        boot = KeyBootPolicy(create_missing=settings.hsm is None, start_afresh=settings.keys_start_afresh)
        await boot_keys(config, keys, redis_url, boot, datetime.now(UTC))
    finally:
        await asyncio.to_thread(keys.close)
    return config


class _WorkersSum(MultiProcessCollector):
    """The sum of the workers' files, the dead ones' counters and histograms folded into one file each.

    prometheus_client keeps a dead worker's counter and histogram files for good (its totals must never go
    down) and reads every one at each scrape: a worker started again a thousand times (an OOM kill every few
    minutes for a few days) left 2,000 files, 126 MiB under /tmp and 0.5 s per scrape, growing without end.
    At each worker's end its values are added to `counter_dead.db` and `histogram_dead.db` and its files
    removed, under a lock the scrape takes too: no scrape sees a value twice or not at all (decision 0114).
    """

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        super().__init__(registry, path=path)  # type: ignore[no-untyped-call]  # untyped upstream
        self._path = path
        self._lock = threading.Lock()

    def collect(self) -> Any:
        """The sum, read while no dead worker is being folded."""
        with self._lock:
            return list(super().collect())  # type: ignore[no-untyped-call]  # untyped upstream

    def fold(self, pid: int) -> None:
        """Add the counters and histograms of dead worker `pid` to the dead ones' files; remove its own and
        its live gauges' files, under the scrape's lock (a scrape that listed a file removed then failed)."""
        with self._lock:
            mark_process_dead(pid, self._path)  # type: ignore[no-untyped-call]  # untyped upstream
            for kind in ("counter", "histogram"):
                dead = Path(self._path) / f"{kind}_{pid}.db"
                if not dead.exists():
                    continue
                # prometheus_client's file format, through its own reader and writer (untyped upstream).
                folded: Any = MmapedDict(str(Path(self._path) / f"{kind}_dead.db"))  # type: ignore[no-untyped-call]
                reader: Any = MmapedDict.read_all_values_from_file
                try:
                    for key, value, _, _ in reader(str(dead)):
                        before, _ = folded.read_value(key)
                        folded.write_value(key, before + value, 0.0)
                finally:
                    folded.close()
                dead.unlink()


def _metrics(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[str | None, CollectorRegistry | None, _WorkersSum | None]:
    """Serve /metrics as the sum over the workers (prometheus_client's multiprocess mode); its directory,
    its registry, where the supervisor adds its own word (`WorkersServing`), and the workers' sum.

    A fresh private directory per run: values a previous run left would be added to this one's. Those of
    supervisors that died without removing theirs (SIGKILL) are removed first (`MetricsDirectory`).
    """
    if settings.metrics_addr is None:
        return None, None, None
    owned = MetricsDirectory()
    stack.callback(owned.close)
    directory = owned.path
    registry = CollectorRegistry()
    workers = _WorkersSum(registry, directory)
    endpoint = MetricsEndpoint(registry, settings.metrics_addr)
    stack.callback(endpoint.close)
    _log.info("metrics on http://%s:%d/metrics", settings.metrics_addr.rpartition(":")[0], endpoint.port)
    return directory, registry, workers


def _forget(pid: int, workers: _WorkersSum | None) -> None:
    """A worker ended: its live gauges go; its counters stay in the sum (they must never go down), folded
    into the dead workers' files."""
    if workers is not None:
        workers.fold(pid)


def _worker_env(
    settings: Settings, redis_url: str, hsm: Pkcs11Config, metrics_dir: str | None
) -> dict[str, str]:
    """The workers' settings: ours, with the ports claimed, the Redis and the token readied, no /metrics.

    The development token is handed over as a configured one: its files are ready, and a worker must not
    write them again while another loads them. Keys are never made by a worker.
    """
    env = dict(os.environ)
    env.update(
        SESAME_GRPC_ADDR=settings.grpc_addr,
        SESAME_REDIS_URL=redis_url,
        SESAME_KEYS_START_AFRESH="0",
        SESAME_METRICS_ADDR="off",
    )
    if settings.transport.health_addr is not None:
        env["SESAME_HEALTH_ADDR"] = settings.transport.health_addr
    if settings.dlr is not None:
        env["SESAME_DLR_ADDR"] = settings.dlr.address
    if settings.hsm is None:
        env.pop("SESAME_HSM_PIN_FILE", None)
        env.update(SESAME_PKCS11_MODULE=hsm.module, SESAME_HSM_TOKEN=hsm.token_label, SESAME_HSM_PIN=hsm.pin)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return env

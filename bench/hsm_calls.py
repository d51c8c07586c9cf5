"""How an asyncio server should call PKCS#11: MAC and sign latency and throughput per strategy, on SoftHSM.

Strategies (each over the same logged-in session of a fresh SoftHSM token in a private directory):
  bare      the call on the HSM thread in a loop, nothing else: the floor SoftHSM and python-pkcs11 set
  hop       `run_in_executor` to the one HSM thread, one hop per call (decision 0001)
  batched   one HSM thread draining a queue, one `call_soon_threadsafe` per drained batch
  inline    the call on the event loop itself, under the module lock (taken without waiting)
  keystore  `Pkcs11KeyStore.mac/sign` as shipped (whatever strategy it uses, metering included)
Loads: `alone` (one call in flight), `concurrent` (32 coroutines), `loaded` (32 coroutines beside 4
coroutines that each hold the GIL for 300 µs of Python per step, as RPC handling does). For `loaded` the
line also gives how many steps the background did per second: a strategy that blocks the loop slows it.

    .venv/bin/python -m bench.hsm_calls --calls 4000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pkcs11 import Mechanism

from sesame.hsm.keys import CurrentKeys, init_keys
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.hsm.session import acquire_token
from sesame.hsm.softhsm import bootstrap_token
from sesame.hsm.worker import HsmWorker, hsm_worker
from sesame.server.domain.model import MacAlgorithm
from sesame.server.metrics import DependencyMeter, Metrics

Call = Callable[[], bytes]
Strategy = Callable[[Call], Awaitable[bytes]]
CONCURRENCY = 32
BACKGROUND_TASKS = 4
BACKGROUND_STEP_SECONDS = 0.0003


class Batcher:
    """One thread that runs queued calls and hands results back to the loop once per drained batch."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Call, asyncio.Future[bytes]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="bench-batcher", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread.start()

    def call(self, fn: Call) -> asyncio.Future[bytes]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[bytes] = loop.create_future()
        self._queue.put((fn, future))
        return future

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            done = [(item[1], item[0]())]
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                done.append((more[1], more[0]()))
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_settle, done)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def _settle(done: list[tuple[asyncio.Future[bytes], bytes]]) -> None:
    for future, value in done:
        future.set_result(value)


def strategies(worker: HsmWorker, lock: threading.Lock, batcher: Batcher) -> dict[str, Strategy]:
    """The ways of running one call from a coroutine."""

    async def hop(fn: Call) -> bytes:
        return await worker.call(fn)

    async def batched(fn: Call) -> bytes:
        return await batcher.call(fn)

    async def inline(fn: Call) -> bytes:
        if lock.acquire(blocking=False):
            try:
                return fn()
            finally:
                lock.release()
        return await hop(fn)  # never reached here: nothing else holds the lock

    return {"hop": hop, "batched": batched, "inline": inline}


async def measure(strategy: Strategy, fn: Call, calls: int, load: str) -> dict[str, float]:
    """Latency percentiles (µs) and calls/s of `calls` calls under `load`."""
    latencies: list[float] = []
    stop = asyncio.Event()
    steps = 0

    async def one() -> None:
        start = time.perf_counter()
        await strategy(fn)
        latencies.append(time.perf_counter() - start)

    async def caller(share: int) -> None:
        for _ in range(share):
            await one()
            await asyncio.sleep(0)  # an RPC yields between its calls (Redis, gRPC): so do the callers

    async def background() -> None:
        nonlocal steps
        while not stop.is_set():
            until = time.perf_counter() + BACKGROUND_STEP_SECONDS
            while time.perf_counter() < until:
                pass
            steps += 1
            await asyncio.sleep(0)

    helpers = [asyncio.create_task(background()) for _ in range(BACKGROUND_TASKS if load == "loaded" else 0)]
    width = 1 if load == "alone" else CONCURRENCY
    began = time.perf_counter()
    await asyncio.gather(*(caller(calls // width) for _ in range(width)))
    elapsed = time.perf_counter() - began
    stop.set()
    await asyncio.gather(*helpers)
    return _summary(latencies, elapsed, steps)


def _summary(latencies: list[float], elapsed: float, steps: int) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_us": 1e6 * statistics.median(ordered),
        "p99_us": 1e6 * ordered[int(0.99 * (len(ordered) - 1))],
        "max_us": 1e6 * ordered[-1],
        "calls_per_s": len(ordered) / elapsed,
        "background_steps_per_s": steps / elapsed,
    }


def bare(worker: HsmWorker, fn: Call, calls: int) -> dict[str, float]:
    """The calls back to back on the HSM thread: no asyncio, no hop."""

    def run() -> tuple[list[float], float]:
        latencies = []
        began = time.perf_counter()
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            latencies.append(time.perf_counter() - start)
        return latencies, time.perf_counter() - began

    latencies, elapsed = worker.run(run)
    return _summary(latencies, elapsed, 0)


def main() -> None:
    """Create a token, run every strategy under every load for MAC and sign, print one line each."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4000, help="calls per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sesame-hsm-bench-") as directory:
        config = bootstrap_token(Path(directory), label="bench", pin="bench-pin")
        current = init_keys(config)
        worker = hsm_worker(config.module)
        token = worker.run(lambda: acquire_token(worker, config.token_label, config.pin))
        mac_key = worker.run(lambda: token.secret_key(current.otp.label))
        signer = worker.run(lambda: token.private_key(current.proof.label))
        digest = hashlib.sha256(b"bench").digest()
        calls: dict[str, Call] = {
            "mac": lambda: bytes(mac_key.sign(b"0" * 64, mechanism=Mechanism.SHA256_HMAC)),
            "sign": lambda: bytes(signer.sign(digest, mechanism=Mechanism.ECDSA)),
        }
        bare_store = Pkcs11KeyStore.open(config)
        store = bare_store.metered(DependencyMeter(Metrics(), "hsm"))  # as `sesame serve` wires it
        asyncio.run(_run_all(worker, calls, store, current, args.calls))
        bare_store.close()


async def _run_all(
    worker: HsmWorker, calls: dict[str, Call], store: Pkcs11KeyStore, current: CurrentKeys, count: int
) -> None:
    batcher = Batcher()
    # Only one strategy runs at a time, so nothing else calls the module while one measures.
    chosen = strategies(worker, threading.Lock(), batcher)

    async def keystore_mac(_: Call) -> bytes:
        return await store.mac(current.otp, b"0" * 64, MacAlgorithm.SHA256)

    async def keystore_sign(_: Call) -> bytes:
        return await store.sign(current.proof, b"bench")

    print(
        f"{'call':5} {'strategy':9} {'load':10} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8} {'calls/s':>8} bg/s"
    )
    for name, fn in calls.items():
        _line(name, "bare", "alone", bare(worker, fn, count))
        shipped = keystore_mac if name == "mac" else keystore_sign
        for strategy_name, strategy in [*chosen.items(), ("keystore", shipped)]:
            for load in ("alone", "concurrent", "loaded"):
                _line(name, strategy_name, load, await measure(strategy, fn, count, load))
    batcher.close()


def _line(call: str, strategy: str, load: str, figures: dict[str, float]) -> None:
    print(
        f"{call:5} {strategy:9} {load:10} {figures['p50_us']:8.0f} {figures['p99_us']:8.0f}"
        f" {figures['max_us']:8.0f} {figures['calls_per_s']:8.0f} {figures['background_steps_per_s']:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()

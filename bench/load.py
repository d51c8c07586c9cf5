"""`make bench`: the bare gRPC floor and Sésame, in one run, from one client, on this machine.

The client runs in this process (grpc.aio on uvloop) and opens several connections to each server, as a
caller's replicas do. It measures, in order and with the same concurrency:

1. echo: a bare grpc.aio echo server (bench/echo_server.py), two calls per operation: the floor;
2. start: StartChallenge alone, against `sesame serve` with its embedded defaults (SoftHSM token,
   redis-server child, console SMS file) started here in a private directory;
3. verify: VerifyChallenge alone, of the challenges opened in 2, their codes read from the SMS file;
4. flows: Start, read the SMS, Verify, as a caller does.

Each phase is bounded by --duration and --max-ops. It writes docs/benchmarks/<date>-<commit>.json and
a .png next to it, and prints a table (docs/benchmarks.md says how to read them).

    python -m bench.load --duration 15 --concurrency 16 --connections 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from bench import report, servers
from bench.driver import Latency, Recorder, Run, drive, pace
from bench.phases import Connections, Echo, Sesame
from bench.procs import Process, describe_machine, listeners
from bench.redis_costs import RedisCosts
from bench.revision import short_commit
from bench.servers import Server
from bench.sms_tail import SmsTail
from bench.usage import Snapshot
from sesame.server.loop_lag import LoopLagMonitor

SMS_SETTLE_SECONDS = 30.0  # the longest the start phase waits for the SMS of its challenges


class _Lags(list[float]):
    """The client's loop lags over one phase (a `LagMeter`)."""

    def observe(self, seconds: float) -> None:
        self.append(seconds)

    def summary(self) -> dict[str, float]:
        lag = Latency.of(self, 1.0)
        return {"p50": lag.p50_ms, "p99": lag.p99_ms, "max": lag.max_ms}


def _processes(server: Server) -> list[Process]:
    return [*server.processes(), Process(os.getpid(), "client")]


async def _measure(
    server: Server,
    load: Awaitable[Run],
    recorder: Recorder,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Await `load`; the phase's CPU and memory include `settle` (the SMS still being handed over)."""
    before = Snapshot.take(_processes(server))
    # The client shares the machine's cores: its own loop's lag is in every latency it measures, and a paced
    # sender whose loop was held sends the arrivals it owes at once (decision 0052).
    lags = _Lags()
    monitor = LoopLagMonitor(lags, interval=0.01)
    monitor.start()
    try:
        run = await load
    finally:
        await monitor.stop()
    if settle is not None:
        await settle()
    usage = before.usage(_processes(server))
    done = max(run.ops, 1)
    return {
        "ops": run.ops,
        "failed": run.failed,
        "seconds": run.seconds,
        "rate_per_s": round(run.ops / run.seconds, 1) if run.seconds else 0.0,
        "stopped_by": run.stopped_by,
        "skipped": run.skipped,
        "rpcs": {name: asdict(Latency.of(s, run.seconds)) for name, s in recorder.samples.items()},
        "errors": dict(recorder.errors),
        "client_loop_lag_ms": lags.summary(),
        "cpu_seconds": usage.cpu_seconds,
        "cpu_ms_per_op": {role: round(1000 * s / done, 3) for role, s in usage.cpu_seconds.items()},
        "processes": [asdict(p) for p in usage.processes],
        "usage_seconds": usage.seconds,
        "machine_busy_cores": usage.machine_busy_cores,
        "other_busy_cores": usage.other_busy_cores,
    }


def _delays(samples: list[float], missing: int) -> dict[str, Any]:
    """SMS hand-over after StartChallenge returned: negative when the SMS was written before the reply."""
    summary = Latency.of(samples, 1.0)
    return {
        "count": summary.count,
        "missing": missing,
        "p50_ms": summary.p50_ms,
        "p99_ms": summary.p99_ms,
        "max_ms": summary.max_ms,
    }


async def _echo_phase(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    with servers.echo(workers) as server:
        connections = Connections(server.address, args.connections)
        try:
            await drive(Echo(connections, Recorder()), args.connections, 5.0, 4 * args.connections)  # warm
            recorder = Recorder()
            load = drive(Echo(connections, recorder), args.concurrency, args.duration, args.max_ops)
            return await _measure(server, load, recorder)
        finally:
            await connections.close()


async def _sesame_phases(
    args: argparse.Namespace, workers: int | None, settings: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory(prefix="sesame-bench-") as scratch,
        servers.sesame(Path(scratch) / "var", workers) as server,
    ):
        assert server.sms_file is not None
        settings["serve_listeners"] = listeners(int(server.address.rsplit(":", 1)[1]))
        connections = Connections(server.address, args.connections)
        tail = SmsTail(server.sms_file)
        stop = asyncio.Event()
        follower = asyncio.create_task(tail.follow(stop))
        try:
            sesame = Sesame(connections, tail, args.users)
            await sesame.enroll()
            # Warm: the first calls on each connection (and the first key lookups) are not measured.
            await drive(sesame.flow_phase(Recorder()), args.connections, 10.0, 4 * args.connections)
            sesame.sms_delays.clear()
            return await _each_sesame_phase(server, sesame, args)
        finally:
            stop.set()
            await follower
            await connections.close()


async def _each_sesame_phase(
    server: Server, sesame: Sesame, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Start, Verify, flows, flows at half their rate; Redis memory and SMS delays around each."""
    redis_url = server.redis_url()
    phases: dict[str, dict[str, Any]] = {}
    missing = 0

    async def settle() -> None:
        nonlocal missing
        missing = await sesame.sms_of_opened(SMS_SETTLE_SECONDS)

    memory_before = servers.settled_used_memory(redis_url)
    for name, make, after in (
        ("start", sesame.start_phase, settle),
        ("verify", sesame.verify_phase, None),
        ("flows", sesame.flow_phase, None),
        ("flows_half", sesame.flow_phase, None),
    ):
        costs = RedisCosts(redis_url, scripts=args.redis_scripts)
        costs.start()
        recorder = Recorder()
        rate = max(1.0, phases["flows"]["rate_per_s"] / 2) if name == "flows_half" else 0.0
        if rate:
            load = pace(make(recorder), rate, args.duration, args.max_ops, 4 * args.concurrency)
        else:
            load = drive(make(recorder), args.concurrency, args.duration, args.max_ops)
        phase = await _measure(server, load, recorder, after)
        phase["redis_costs"] = costs.stop(phase["ops"])
        memory_after = servers.settled_used_memory(redis_url)
        delta, memory_before = memory_after - memory_before, memory_after
        phase["redis_used_memory_delta_bytes"] = delta
        phase["redis_bytes_per_op"] = round(delta / phase["ops"]) if phase["ops"] else 0
        if rate:
            phase["target_rate_per_s"] = round(rate, 1)
        if name != "verify":
            # A flow that never saw its SMS failed, and was counted among its phase's errors.
            unseen = missing if name == "start" else recorder.errors.get("SMS:never written", 0)
            phase["sms_after_start_ms"] = _delays(sesame.sms_delays, unseen)
            sesame.sms_delays.clear()
        phases[name] = phase
    return phases


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase, and the record that describes them."""
    started = datetime.now(UTC)
    has_workers = servers.serve_has_workers()
    workers = (args.workers or os.cpu_count() or 1) if has_workers else None
    if args.workers and not has_workers:
        print("this `sesame serve` has no --workers option: one server process", file=sys.stderr)
    machine = describe_machine()
    echo_workers = args.echo_workers or workers or 1
    phases = {"echo": await _echo_phase(args, echo_workers)}
    settings: dict[str, Any] = {
        "duration_s": args.duration,
        "max_ops": args.max_ops,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "users": args.users,
        "workers": workers,
        "serve_has_workers": has_workers,
        "echo_workers": echo_workers,
        "redis_scripts": args.redis_scripts,
    }
    phases.update(await _sesame_phases(args, workers, settings))
    return {
        "schema": "sesame-bench/1",
        "started_at": started.isoformat(timespec="seconds"),
        "commit": short_commit(Path.cwd()),
        "machine": machine,
        "settings": settings,
        "phases": phases,
        "summary": report.summary(phases),
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase, at most")
    parser.add_argument("--max-ops", type=int, default=100_000, help="operations per phase, at most")
    parser.add_argument("--concurrency", type=int, default=16, help="operations in flight")
    parser.add_argument("--connections", type=int, default=4, help="client connections to each server")
    parser.add_argument("--users", type=int, default=64, help="enrolled users the operations spread over")
    parser.add_argument(
        "--workers", type=int, default=None, help="`sesame serve --workers` when it has it (default: cores)"
    )
    parser.add_argument(
        "--echo-workers", type=int, default=None, help="echo server processes (default: as many as Sésame's)"
    )
    parser.add_argument(
        "--redis-scripts",
        action="store_true",
        help="Redis time per script from the slow log (costs Redis CPU itself: not for published figures)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"), help="where JSON and PNG go")
    args = parser.parse_args()
    if min(args.concurrency, args.connections, args.users, args.max_ops, args.echo_workers or 1) < 1:
        parser.error("counts must be at least 1")
    return args


def main() -> None:
    """Run, write the JSON and the PNG, print the table and where they are."""
    args = _arguments()
    record = uvloop.run(run(args))
    json_path, png_path = report.output_paths(args.out, record["started_at"][:10], record["commit"])
    report.write_json(record, json_path)
    report.plot(record, png_path)
    print(report.table(record))
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()

"""`make bench`: the bare gRPC floor and Sésame, in one run, from the same clients, on this machine.

The load comes from `--client-processes` client processes (bench/client_process.py, grpc.aio on uvloop,
each its own event loop), which share out the concurrency, the connections and the users, and open several
connections to each server, as a caller's replicas do; this process starts the servers, tells the clients
what to run and merges what they measured (bench/merge.py, decision 0059). It measures, in order and with
the same clients and concurrency:

1. echo: a bare grpc.aio echo server (bench/echo_server.py), two calls per operation: the floor;
2. skeleton, skeleton_verify, skeleton_half: Start then Verify, Verify alone, and the flow at half its rate,
   against the design's skeleton (bench/skeleton_server.py): the least they can cost on this stack
   (decision 0083);
3. start: StartChallenge alone, against `sesame serve` with its embedded defaults (SoftHSM token,
   redis-server child, console SMS file) started here in a private directory;
4. verify: VerifyChallenge alone, of the challenges opened in 3, their codes read from the SMS file;
5. flows: Start, read the SMS, Verify, as a caller does; 6. flows_half: the same at half its rate.

Each phase is bounded by --duration and --max-ops. It writes docs/benchmarks/<date>-<commit>.json and
a .png next to it, and prints a table (docs/benchmarks.md says how to read them).

    python -m bench.load --duration 15 --concurrency 16 --connections 4 --client-processes 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from bench import merge, redis_census, report, servers
from bench.driver import Latency
from bench.fleet import Fleet
from bench.merge import Part
from bench.procs import Process, describe_machine, listeners
from bench.redis_costs import RedisCosts
from bench.revision import short_commit
from bench.server_lag import LagCounts
from bench.servers import Server
from bench.spread import listening_workers, quotas
from bench.usage import Snapshot
from sesame.server.domain.risk_signals import IN_FLIGHT_READ

SMS_SETTLE_SECONDS = 30.0  # the longest the start phase waits for the SMS of its challenges
# Load client processes by default (decision 0059, measured on the project's 2-core machine): the closed-loop
# phases from one, whose figures are rates, since every further process costs client CPU the servers lose;
# the paced phase from three, whose figure is the tail, which one loop lengthened.
CLIENT_PROCESSES = 1
PACED_CLIENT_PROCESSES = 3
# Enrolled users the operations spread over (the paced processes enroll as many again). Enough that none holds
# more than 128 challenges over a run (~13,000 at today's rates: ~50 each): past 128, Redis converts a user's
# pending and evidence sorted sets from listpack to skiplist, several times the size, and the phase that
# crossed the line was charged the conversion (at 64 users, 300-500 B per flow of the 2 KB target, measured at
# 75985aa). A bank's user holds a few challenges at a time, never a hundred.
USERS = 256
# The start phase keeps every challenge it opens for the verify phase: at most this many a user, under the
# most a user may have open at once (decision 0095), the rest left to flows that may overlap them. At 256
# users, 14,336 Starts: the phase ends before --duration only past 950 Starts a second.
OPEN_PER_USER = IN_FLIGHT_READ - 8


@dataclass(frozen=True, slots=True)
class _Clients:
    """The client processes of the closed-loop phases (echo, start, verify, flows) and of the paced one."""

    closed: Fleet
    paced: Fleet

    def of(self, phase: str) -> Fleet:
        """The processes that run `phase`."""
        return self.paced if phase.endswith("_half") else self.closed

    def processes(self) -> list[Process]:
        """Every client process (an idle one's CPU is the client's too)."""
        return [*self.closed.processes(), *self.paced.processes()]


def _processes(server: Server, clients: _Clients) -> list[Process]:
    return [*server.processes(), *clients.processes(), Process(os.getpid(), "client")]


def _commands(fleet: Fleet, args: argparse.Namespace, name: str, rate: float = 0.0) -> list[dict[str, Any]]:
    """Each client process's share of phase `name`: concurrency, operations and (paced) arrival rate."""
    at = fleet.at()
    most = min(args.max_ops, args.users * OPEN_PER_USER) if name == "start" else args.max_ops
    return [
        {
            "do": "phase",
            "name": name,
            "concurrency": concurrency,
            "duration": args.duration,
            "max_ops": max_ops,
            "rate": rate / len(fleet),
            "max_in_flight": 4 * concurrency,
            "at": at,
        }
        for concurrency, max_ops in zip(fleet.split(args.concurrency), fleet.split(most), strict=True)
    ]


@dataclass(frozen=True, slots=True)
class _Sms:
    """The SMS delays the client processes saw (seconds), and how many SMS never came."""

    delays: list[float]
    missing: int = 0


async def _measure(
    server: Server,
    clients: _Clients,
    fleet: Fleet,
    commands: list[dict[str, Any]],
    settle: Callable[[], Awaitable[_Sms]] | None = None,
) -> tuple[dict[str, Any], _Sms]:
    """Run one phase in every client process; its CPU and memory include `settle` (the SMS still being
    handed over). The figures are merged from the processes' raw samples (bench.merge)."""
    processes = _processes(server, clients)
    lag_before = LagCounts.scrape(server.metrics) if server.metrics else None
    before = Snapshot.take(processes)
    answers = await fleet.ask(commands)
    sms = _Sms([d for answer in answers for d in answer["sms_delays"]])
    if settle is not None:
        sms = await settle()
    usage = before.usage(processes)
    # The client shares the machine's cores: each process's own loop lag is in every latency it measures,
    # and a paced sender whose loop was held sends the arrivals it owes at once (decisions 0052, 0059).
    phase = merge.merged([Part.of(answer) for answer in answers])
    done = max(phase["ops"], 1)
    phase |= {
        "cpu_seconds": usage.cpu_seconds,
        "cpu_ms_per_op": {role: round(1000 * s / done, 3) for role, s in usage.cpu_seconds.items()},
        "run_queue_ms_per_op": {
            role: round(1000 * s / done, 3) for role, s in usage.run_queue_seconds.items()
        },
        "processes": [asdict(p) for p in usage.processes],
        "usage_seconds": usage.seconds,
        "machine_busy_cores": usage.machine_busy_cores,
        "other_busy_cores": usage.other_busy_cores,
    }
    if server.metrics and lag_before is not None:
        phase["server_loop_lag"] = LagCounts.scrape(server.metrics).since(lag_before)
    return phase, sms


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


async def _bare_phases(
    args: argparse.Namespace, server: Server, clients: _Clients, names: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Phases `names` against `server` (echo, skeleton): the closed-loop ones from the closed-loop processes
    (flows / echo and flows / skeleton compare like with like), then a `<role>_half` one, if named, from the
    paced processes at half the rate of the closed-loop `<role>` phase, as `flows_half` is run."""
    phases: dict[str, dict[str, Any]] = {}
    for name in names:
        fleet = clients.of(name)
        # Warm: the first calls on each connection are not measured (each process warms its own).
        split = fleet.split(args.connections)
        placed = await fleet.ask(
            [
                {"do": server.role, "address": server.address, "connections": c, "quota": quota}
                for c, quota in zip(split, _quotas(server, split), strict=True)
            ]
        )
        rate = max(1.0, phases[server.role]["rate_per_s"] / 2) if clients.paced is fleet else 0.0
        try:
            phase, _ = await _measure(server, clients, fleet, _commands(fleet, args, name, rate))
        finally:
            await fleet.ask_all({"do": "close"})
        phases[name] = phase | {"connections_per_process": _placed(placed)}
        if rate:
            phases[name]["target_rate_per_s"] = round(rate, 1)
    return phases


async def _echo_phase(args: argparse.Namespace, workers: int, clients: _Clients) -> dict[str, Any]:
    with servers.echo(workers) as server:
        return (await _bare_phases(args, server, clients, ("echo",)))["echo"]


async def _skeleton_phases(
    args: argparse.Namespace, workers: int, clients: _Clients
) -> dict[str, dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory(prefix="sesame-skeleton-") as scratch,
        servers.skeleton(Path(scratch) / "var", workers) as server,
    ):
        return await _bare_phases(args, server, clients, ("skeleton", "skeleton_verify", "skeleton_half"))


async def _sesame_phases(
    args: argparse.Namespace, workers: int | None, settings: dict[str, Any], clients: _Clients
) -> dict[str, dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory(prefix="sesame-bench-") as scratch,
        servers.sesame(Path(scratch) / "var", workers) as server,
    ):
        assert server.sms_file is not None
        settings["serve_listeners"] = listeners(int(server.address.rsplit(":", 1)[1]))
        placed = _placed(await _open_sesame(server, clients.closed, args, first_user=0))
        try:
            return await _each_sesame_phase(server, clients, args, placed)
        finally:
            await clients.closed.ask_all({"do": "close"})
            await clients.paced.ask_all({"do": "close"})


def _quotas(server: Server, connections: list[int]) -> list[dict[int, int]]:
    """Each client process's connections per worker of `server` (bench.spread): the workers are the processes
    of its tree that listen on its port; none found, no quota (the connections land where they do)."""
    port = int(server.address.rsplit(":", 1)[1])
    workers = listening_workers(port, [p.pid for p in server.processes() if p.role != "redis"])
    return quotas(workers, connections) if workers else [{} for _ in connections]


def _placed(answers: list[dict[str, Any]]) -> list[int]:
    """How many of the clients' connections each server process accepted, busiest first."""
    counts: dict[str, int] = {}
    for answer in answers:
        for pid, count in answer.get("placed", {}).items():
            counts[pid] = counts.get(pid, 0) + count
    return sorted(counts.values(), reverse=True)


async def _open_sesame(
    server: Server, fleet: Fleet, args: argparse.Namespace, first_user: int
) -> list[dict[str, Any]]:
    """Each process of `fleet` opens its connections, follows the SMS file, enrolls its own users (numbers
    from `first_user` on) and warms its connections; their answers (where the connections landed)."""
    users = fleet.split(args.users)
    firsts = [first_user + sum(users[:i]) for i in range(len(users))]
    split = fleet.split(args.connections)
    return await fleet.ask(
        [
            {
                "do": "sesame",
                "address": server.address,
                "connections": connections,
                "quota": quota,
                "sms_file": str(server.sms_file),
                "users": count,
                "first": first,
            }
            for connections, quota, count, first in zip(
                split, _quotas(server, split), users, firsts, strict=True
            )
        ]
    )


def _key_bytes(grown: dict[str, redis_census.Kind], ops: int) -> dict[str, Any]:
    """A phase's change of what the keys hold (`bench.redis_census`) per operation: in all, in the keys kept
    past the hour, and by kind of key (every kind that changed, the biggest changes first, `~` before a kind
    that leaves within the hour)."""

    def per_op(n: int) -> int:
        return round(n / ops) if ops else 0

    return {
        "redis_key_bytes_per_op": per_op(sum(k.bytes for k in grown.values())),
        "redis_kept_bytes_per_op": per_op(sum(k.bytes for k in grown.values() if k.kept)),
        "redis_key_bytes_per_op_by_kind": {
            ("" if k.kept else "~") + name: per_op(k.bytes) for name, k in grown.items()
        },
    }


async def _each_sesame_phase(
    server: Server, clients: _Clients, args: argparse.Namespace, placed: list[int]
) -> dict[str, dict[str, Any]]:
    """Start, Verify, flows, flows at half their rate; Redis memory and SMS delays around each. `placed`:
    how many of the closed-loop processes' connections each server process accepted."""
    redis_url = server.redis_url()
    phases: dict[str, dict[str, Any]] = {}

    async def settle() -> _Sms:
        answers = await clients.closed.ask_all({"do": "settle", "limit": SMS_SETTLE_SECONDS})
        return _Sms([d for a in answers for d in a["sms_delays"]], sum(a["missing"] for a in answers))

    memory_before = servers.settled_used_memory(redis_url)
    keys_before = redis_census.census(redis_url)
    for name in ("start", "verify", "flows", "flows_half"):
        if name == "flows_half":
            # The paced processes connect only now: idle beside the closed-loop phases, their tails and
            # channels would take CPU from them; what their enrolment and warm-up leave is not this phase's.
            placed = _placed(await _open_sesame(server, clients.paced, args, first_user=args.users))
            memory_before = servers.settled_used_memory(redis_url)
            keys_before = redis_census.census(redis_url)
        costs = RedisCosts(redis_url, scripts=args.redis_scripts)
        costs.start()
        rate = max(1.0, phases["flows"]["rate_per_s"] / 2) if name == "flows_half" else 0.0
        after = settle if name == "start" else None
        fleet = clients.of(name)
        phase, sms = await _measure(server, clients, fleet, _commands(fleet, args, name, rate), after)
        phase["redis_costs"] = costs.stop(phase["ops"])
        phase["connections_per_process"] = placed
        memory_after = servers.settled_used_memory(redis_url)
        delta, memory_before = memory_after - memory_before, memory_after
        phase["redis_used_memory_delta_bytes"] = delta
        phase["redis_bytes_per_op"] = round(delta / phase["ops"]) if phase["ops"] else 0
        keys_after = redis_census.census(redis_url)
        phase.update(_key_bytes(redis_census.grown(keys_before, keys_after), phase["ops"]))
        keys_before = keys_after
        if rate:
            phase["target_rate_per_s"] = round(rate, 1)
        if name != "verify":
            # A flow that never saw its SMS failed, and was counted among its phase's errors.
            unseen = sms.missing if name == "start" else phase["errors"].get("SMS:never written", 0)
            phase["sms_after_start_ms"] = _delays(sms.delays, unseen)
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
    clients = _Clients(
        await Fleet.start(args.client_processes), await Fleet.start(args.paced_client_processes)
    )
    try:
        phases = {"echo": await _echo_phase(args, echo_workers, clients)}
        phases.update(await _skeleton_phases(args, echo_workers, clients))
        settings = _settings(args, workers, has_workers=has_workers, echo_workers=echo_workers)
        phases.update(await _sesame_phases(args, workers, settings, clients))
    finally:
        await clients.closed.stop()
        await clients.paced.stop()
    return {
        "schema": "sesame-bench/1",
        "started_at": started.isoformat(timespec="seconds"),
        "commit": short_commit(Path.cwd()),
        "machine": machine,
        "settings": settings,
        "phases": phases,
        "summary": report.summary(phases),
    }


def _settings(
    args: argparse.Namespace, workers: int | None, *, has_workers: bool, echo_workers: int
) -> dict[str, Any]:
    return {
        "duration_s": args.duration,
        "max_ops": args.max_ops,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "users": args.users,
        "workers": workers,
        "serve_has_workers": has_workers,
        "echo_workers": echo_workers,
        "redis_scripts": args.redis_scripts,
        "client_processes": args.client_processes,
        "paced_client_processes": args.paced_client_processes,
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase, at most")
    parser.add_argument("--max-ops", type=int, default=100_000, help="operations per phase, at most")
    parser.add_argument("--concurrency", type=int, default=16, help="operations in flight")
    parser.add_argument("--connections", type=int, default=4, help="client connections to each server")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=CLIENT_PROCESSES,
        help="load client processes of the closed-loop phases (echo, start, verify, flows), each its own "
        "loop, sharing out concurrency, connections and users",
    )
    parser.add_argument(
        "--paced-client-processes",
        type=int,
        default=PACED_CLIENT_PROCESSES,
        help="load client processes of the paced phase (flows_half), shared out the same way",
    )
    parser.add_argument("--users", type=int, default=USERS, help="enrolled users the operations spread over")
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
    most = min(args.concurrency, args.connections, args.users)
    if not (1 <= args.client_processes <= most and 1 <= args.paced_client_processes <= most):
        parser.error(
            "--client-processes and --paced-client-processes must be at least 1 and at most --concurrency, "
            "--connections and --users"
        )
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

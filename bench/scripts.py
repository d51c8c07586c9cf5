"""Redis's own cost per call of each hot Lua script, through the real adapters (issue 6, decision 0061).

`python -m bench.scripts` starts its own redis-server (EmbeddedRedis, as `sesame serve` runs it: AOF on) and
SoftHSM token in private temporary directories, wires the flows as `sesame serve` does (default risk rules,
the bench's send budgets, a console SMS gateway, one dispatch loop) and enrolls `--users` users. Then,
round after round, it runs `--flows` Start + Verify flows as the bench's clients do (a credit transfer),
with the dispatch loop sending every SMS and the sealer sealing every second (the feeds' reads, the
journals' drops, the openings' index) beside them. Realistic state: the budgets fill over the rounds, the
journals and feeds grow.

After `--warm` flows not counted (each user's risk memory and budgets grow as in the bench), two figures
from two kinds of round:
- per script (`metered` rounds): every script call is serialised behind one lock between two INFO
  commandstats, so that Redis's `evalsha` time (µs per call: the slow log stays off) and the commands the
  script ran inside are the script's own; and the CPU time of redis-server's main thread over the call
  (/proc schedstat: on a CPU only, where `evalsha`'s µs are wall time and count the waits of a busy machine;
  the few commands other connections ran meanwhile are in it too);
- per flow (`free` rounds, nothing serialised, no INFO): redis-server's process CPU (user + system, from
  /proc) and INFO commandstats' `evalsha` µs, divided by the flows.

Redis's CPU varies with what else runs on the machine: compare runs made in the same conditions (A/B
interleaved), and say how they were made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import defaultdict
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis

from bench import aof_census
from bench.backends import backends
from sesame.clients.redis_scripts import Scripts
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.clients.sms_console import ConsoleSmsGateway
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.app import Gateway, Runtime, journal_sealer, wire
from sesame.server.clock_watch import SystemClock
from sesame.server.dispatch_loop import DispatchLoops, DispatchSettings
from sesame.server.domain import codes
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengePolicy, ChallengeRef, StartRequest, VerifyRequest
from sesame.server.domain.lifecycle import LifecyclePolicy
from sesame.server.domain.model import RequestContext, SentSms, SmsMessage, User, UserStatus
from sesame.server.domain.operation import CreditTransfer, Money, Payee, digest
from sesame.server.journal_archive import JournalArchive
from sesame.server.metrics import Metrics
from sesame.server.sealer import SealerTiming

T = TypeVar("T")
# As bench.phases.OPERATION and bench.servers.BENCH_SETTINGS.
OPERATION = CreditTransfer(Money("EUR", 125000), Payee("Jean DUPONT", "FR7630006000011234567890189"), "tx-1")
BUDGET = SendBudget(per_user=1_000_000, per_phone=1_000_000, per_caller=10_000_000, overall=10_000_000)
CONCURRENCY = 16


class Meter:
    """Per script name: calls, evalsha µs and the commands run inside, from INFO commandstats around each
    call (serialised: one script at a time in Redis), while `on`."""

    def __init__(self, url: str, pid: int) -> None:
        self._info = redis.Redis.from_url(url)
        self._pid = pid
        self._lock = asyncio.Lock()
        self.on = False
        self.calls: dict[str, int] = defaultdict(int)
        self.evalsha_us: dict[str, int] = defaultdict(int)
        self.cpu_ns: dict[str, int] = defaultdict(int)
        self.inner: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.inner_us: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def stats(self) -> dict[str, tuple[int, int]]:
        info = self._info.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for name, v in info.items()
            if isinstance(v, dict)
        }

    async def around(self, name: str, count: int, command: Awaitable[T]) -> T:
        if not self.on:
            return await command
        async with self._lock:
            before = self.stats()
            cpu = _main_thread_ns(self._pid)
            try:
                return await command
            finally:
                cpu = _main_thread_ns(self._pid) - cpu
                after = self.stats()
                self.calls[name] += count
                self.cpu_ns[name] += cpu
                for cmd, (calls, usec) in after.items():
                    calls0, usec0 = before.get(cmd, (0, 0))
                    if cmd == "evalsha":
                        self.evalsha_us[name] += usec - usec0
                    elif cmd not in ("info", "xread") and calls > calls0:  # xread: the bell's wait
                        self.inner[name][cmd] += calls - calls0
                        self.inner_us[name][cmd] += usec - usec0

    def report(self) -> dict[str, Any]:
        return {
            name: {
                "calls": calls,
                "evalsha_us_per_call": round(self.evalsha_us[name] / calls, 1),
                "cpu_us_per_call": round(self.cpu_ns[name] / calls / 1000, 1),
                "inner_per_call": {
                    cmd: round(n / calls, 2)
                    for cmd, n in sorted(self.inner[name].items(), key=lambda kv: -kv[1])
                },
                # Redis's own time in each command the script ran (µs per call of the script): what is
                # left of `evalsha_us_per_call` is the script's Lua and its calls' crossings.
                "inner_us_per_call": {
                    cmd: round(us / calls, 1)
                    for cmd, us in sorted(self.inner_us[name].items(), key=lambda kv: -kv[1])
                },
            }
            for name, calls in sorted(self.calls.items(), key=lambda kv: -self.evalsha_us[kv[0]])
        }


def _metered(meter: Meter) -> None:
    """Every script call (one, or a pipeline of one script) through `meter`."""
    run, run_each = Scripts._run, Scripts.run_each  # noqa: SLF001 (the bench looks inside)

    async def metered_run(self: Scripts, name: str, keys: Any, args: Any, program: str = "") -> Any:
        return await meter.around(name, 1, run(self, name, keys, args, program))

    async def metered_each(self: Scripts, name: str, calls: Any) -> Any:
        return await meter.around(name, len(calls), run_each(self, name, calls))

    Scripts._run = metered_run  # type: ignore[method-assign]  # noqa: SLF001
    Scripts.run_each = metered_each  # type: ignore[method-assign]


def _main_thread_ns(pid: int) -> int:
    """The ns redis-server's main thread (commands, scripts) spent on a CPU so far: not the time it waited
    for one, as `evalsha`'s µs (wall time) count on a busy machine."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0])


def _redis_cpu(pid: int) -> float:
    """redis-server's CPU seconds so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sent(ConsoleSmsGateway):
    """The console gateway, telling each challenge's waiter that its SMS went (as the bench's client reads
    the code from the SMS file before it verifies: the dispatcher spends and sends first)."""

    def __init__(self, path: Path, clock: SystemClock) -> None:
        super().__init__(path, clock, "development")
        self.waiting: dict[str, asyncio.Future[None]] = {}

    async def send(self, message: SmsMessage) -> SentSms:
        sent = await super().send(message)
        waiter = self.waiting.setdefault(message.challenge_id, asyncio.get_running_loop().create_future())
        if not waiter.done():
            waiter.set_result(None)
        return sent


async def _round(running: Runtime, sms: Sent, keystore: Pkcs11KeyStore, users: int, flows: int) -> None:
    """`flows` Start + Verify flows, CONCURRENCY at a time, each verified once its SMS went; then a pause
    for the sealer to seal what is left."""
    context = RequestContext()
    index = iter(range(flows))

    async def worker() -> None:
        for n in index:
            user = f"bench-{n % users}"
            started = await running.challenges.start(StartRequest(user, OPERATION, context))
            waiter = sms.waiting.setdefault(started.challenge_id, asyncio.get_running_loop().create_future())
            await asyncio.wait_for(waiter, 30)
            del sms.waiting[started.challenge_id]
            ref = ChallengeRef.parse(started.challenge_id)
            code = await codes.derive(
                keystore,
                key_version=ref.key_version,
                digits=ref.digits,
                nonce=ref.nonce,
                op_digest=digest(OPERATION),
            )
            await running.challenges.verify(VerifyRequest(started.challenge_id, code, OPERATION, context))

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    await asyncio.sleep(2 * SealerTiming().interval.total_seconds())  # the sealer seals what is left


async def _run(
    args: argparse.Namespace, server: EmbeddedRedis, keystore: Pkcs11KeyStore, root: Path
) -> dict[str, Any]:
    pid = int(server.pid_file.read_text())
    meter = Meter(server.url, pid)
    _metered(meter)
    client = aioredis.Redis.from_url(server.url)
    store = RedisState.on(client)
    outbox = store.outbox()
    clock = SystemClock()
    sms = Sent(root / "sms.txt", clock)
    archive = JournalArchive(root / "archive")
    running = wire(
        keys=keystore,
        store=store,
        outbox=outbox,
        units=outbox.send_units(),
        sms=Gateway("console", sms),
        clock=clock,
        policy=ChallengePolicy(send_budget=BUDGET),
        lifecycle=LifecyclePolicy(),
        metrics=Metrics(),
        archive=archive,
    )
    loops = DispatchLoops(running.dispatcher, outbox, running.metrics, clock, DispatchSettings())
    loops.start()
    # The sealer as `sesame serve` runs it: a block at least every second (read_feed, drop_journal, ...).
    sealer, stop = journal_sealer(store, keystore, archive, running.metrics.journal, None), asyncio.Event()
    sealing = asyncio.create_task(sealer.run(stop))
    now = datetime.now(UTC)
    for n in range(args.users):
        phone = f"+336{10000000 + n:08d}"
        await store.users.register_user(
            User(f"bench-{n}", "client-1", phone, "fr", UserStatus.ACTIVE, now - timedelta(days=30))
        )
    stats = meter.stats
    rounds_ms: list[float] = []  # main-thread CPU per flow, each free round: the least is the least disturbed
    free = {"flows": 0, "cpu_s": 0.0, "main_ns": 0, "evalsha_us": 0, "evalsha_calls": 0}
    await _round(running, sms, keystore, args.users, args.warm)
    for _ in range(args.rounds):
        for metered in (False, True) if args.per_script else (False,):
            meter.on = metered
            cpu0, main0, before = _redis_cpu(pid), _main_thread_ns(pid), stats().get("evalsha", (0, 0))
            await _round(running, sms, keystore, args.users, args.flows)
            cpu1, main1, after = _redis_cpu(pid), _main_thread_ns(pid), stats().get("evalsha", (0, 0))
            meter.on = False
            if not metered:
                free["flows"] += args.flows
                free["cpu_s"] += cpu1 - cpu0
                free["main_ns"] += main1 - main0
                rounds_ms.append(round((main1 - main0) / args.flows / 1e6, 3))
                free["evalsha_calls"] += after[0] - before[0]
                free["evalsha_us"] += after[1] - before[1]
    stop.set()
    await sealing
    await loops.stop()
    await outbox.close()
    await client.aclose()
    flows = max(free["flows"], 1)
    return {
        "users": args.users,
        "flows_per_round": args.flows,
        "rounds": args.rounds,
        "warm": args.warm,
        "per_flow": {
            "redis_cpu_ms": round(free["cpu_s"] / flows * 1000, 3),
            "redis_main_thread_cpu_ms": round(free["main_ns"] / flows / 1e6, 3),
            "evalsha_us": round(free["evalsha_us"] / flows, 1),
            "evalsha_calls": round(free["evalsha_calls"] / flows, 2),
            "redis_main_thread_cpu_ms_rounds": rounds_ms,
        },
        "per_script": meter.report(),
    }


def _print(record: dict[str, Any]) -> None:
    flow = record["per_flow"]
    rounds, flows, users = record["rounds"], record["flows_per_round"], record["users"]
    print(f"{rounds} rounds of {flows} Start+Verify flows over {users} users, after {record['warm']} flows")
    print(
        f"per flow: redis CPU {flow['redis_cpu_ms']} ms (main thread {flow['redis_main_thread_cpu_ms']} ms),"
        f" evalsha {flow['evalsha_us']} µs"
        f" in {flow['evalsha_calls']} calls"
    )
    print(f"main thread per flow, each round: {flow['redis_main_thread_cpu_ms_rounds']} ms")
    print("\n".join(record["aof"]["lines"]))
    print(f"{'script':24} {'calls':>7} {'µs/call':>8} {'CPU µs':>8}  commands inside per call")
    for name, s in record["per_script"].items():
        spent = s["inner_us_per_call"]
        inner = ", ".join(f"{cmd} {n:g} ({spent.get(cmd, 0):g} µs)" for cmd, n in s["inner_per_call"].items())
        wall, cpu = s["evalsha_us_per_call"], s["cpu_us_per_call"]
        print(f"{name:24} {s['calls']:7d} {wall:8.1f} {cpu:8.1f}  {inner}")


def main() -> None:
    """Start Redis and SoftHSM, run the rounds, print Redis's cost per script call and per flow."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flows", type=int, default=400, help="Start+Verify flows per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind measured")
    parser.add_argument(
        "--warm", type=int, default=1600, help="flows first, not measured (each user's risk memory grows)"
    )
    parser.add_argument("--users", type=int, default=64, help="enrolled users the flows spread over")
    parser.add_argument(
        "--no-per-script", dest="per_script", action="store_false", help="only the free rounds (per flow)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with backends("sesame-scripts-bench-") as (root, server, keystore):
        started = time.monotonic()
        record = asyncio.run(_run(args, server, keystore, root))
        record["seconds"] = round(time.monotonic() - started, 1)
        # Every flow the run made, warm and measured: what the AOF took for each (bench.aof_census).
        every = args.warm + args.rounds * args.flows * (2 if args.per_script else 1)
        written = aof_census.census(root / "redis" / "appendonlydir")
        record["aof"] = {"flows": every, "lines": aof_census.lines(written, every)}
    _print(record)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

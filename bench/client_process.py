"""One load client process of `make bench` (decision 0059): its own loop, connections, users and SMS tail.

A client shares the machine's two cores with the servers: one process's loop, busy timing thousands of
calls, runs its timers late, and every latency it times carries that lag. `bench.load` therefore starts
`--client-processes` of these, gives each its share of the concurrency, the connections and the users, and
merges what they measured (`bench.merge`). It speaks to each over its standard input and output, one JSON
object a line: a command, then the answer, in order.

- `{"do": "echo", "address", "connections", "quota"}`: open the connections to the echo server, placed
  over its workers as `quota` says (pid -> connections: bench.spread), and warm them;
- `{"do": "skeleton", "address", "connections", "quota"}`: the same for the design's skeleton server
  (bench/skeleton_server.py);
- `{"do": "sesame", "address", "connections", "quota", "sms_file", "users", "first"}`: open the
  connections to `sesame serve` as above, follow the SMS file (this process's numbers only), enroll the
  users, warm. Both answer `placed`: how many connections each server process accepted;
- `{"do": "phase", "name", "concurrency", "duration", "max_ops", "rate", "max_in_flight", "at"}`: run the
  phase from `at` (time.monotonic(), which every process of the machine shares) and answer what it measured:
  operations, every RPC's latency, errors, the loop's lags, and the SMS delays of its flows;
- `{"do": "settle", "limit"}`: wait for the SMS of every challenge the start phase opened; the delays and
  the number missing;
- `{"do": "close"}`: close the connections (and stop following the SMS file); `{"do": "exit"}`: end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.driver import Recorder, Run, drive, pace
from bench.phases import Connections, Echo, Sesame, Skeleton, numbers
from bench.sms_tail import SmsTail
from sesame.server.loop_lag import LoopLagMonitor

LAG_INTERVAL = 0.01  # seconds between the timers whose lateness is the loop's lag


class _Lags(list[float]):
    """The loop's lags over one phase (a `LagMeter`)."""

    def observe(self, seconds: float) -> None:
        self.append(seconds)


class Client:
    """What this process holds between commands: connections to one server, and for Sésame its users."""

    def __init__(self) -> None:
        """Nothing open yet."""
        self._connections: Connections | None = None
        self._sesame: Sesame | None = None
        self._stop = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None

    async def echo(self, address: str, connections: int, quota: dict[str, int]) -> dict[str, Any]:
        """Open the connections to the echo server; the first calls on each are not measured."""
        self._connections = await Connections.spread(address, connections, _pids(quota))
        await drive(Echo(self._connections, Recorder()), connections, 5.0, 4 * connections)
        return {"placed": self._connections.placed}

    async def skeleton(self, address: str, connections: int, quota: dict[str, int]) -> dict[str, Any]:
        """Open the connections to the skeleton server; the first calls on each are not measured."""
        self._connections = await Connections.spread(address, connections, _pids(quota))
        await drive(Skeleton(self._connections, Recorder()), connections, 5.0, 4 * connections)
        return {"placed": self._connections.placed}

    async def sesame(  # noqa: PLR0917 (one argument per field of the command, passed by name)
        self,
        address: str,
        connections: int,
        quota: dict[str, int],
        sms_file: str,
        users: int,
        first: int,
    ) -> dict[str, Any]:
        """Open the connections to `sesame serve`, follow its SMS file, enroll this process's users, warm."""
        self._connections = await Connections.spread(address, connections, _pids(quota))
        tail = SmsTail(Path(sms_file), numbers(first, users))
        self._stop = asyncio.Event()
        self._follower = asyncio.create_task(tail.follow(self._stop))
        self._sesame = Sesame(self._connections, tail, users, first)
        await self._sesame.enroll()
        # Warm: the first calls on each connection (and the first key lookups) are not measured.
        await drive(self._sesame.flow_phase(Recorder()), connections, 10.0, 4 * connections)
        self._sesame.sms_delays.clear()
        return {"placed": self._connections.placed}

    async def phase(  # noqa: PLR0917 (one argument per field of the command, passed by name)
        self,
        name: str,
        concurrency: int,
        duration: float,
        max_ops: int,
        rate: float,
        max_in_flight: int,
        at: float,
    ) -> dict[str, Any]:
        """Run this process's share of phase `name` from `at`; what it measured, raw."""
        recorder = Recorder()
        operation = self._operation(name, recorder)
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        lags = _Lags()
        monitor = LoopLagMonitor(lags, interval=LAG_INTERVAL)
        monitor.start()
        try:
            run: Run
            if rate:
                run = await pace(operation, rate, duration, max_ops, max_in_flight)
            else:
                run = await drive(operation, concurrency, duration, max_ops)
        finally:
            await monitor.stop()
        delays: list[float] = []
        if self._sesame is not None:
            delays, self._sesame.sms_delays[:] = list(self._sesame.sms_delays), []
        return {
            "ops": run.ops,
            "failed": run.failed,
            "seconds": run.seconds,
            "stopped_by": run.stopped_by,
            "skipped": run.skipped,
            "samples": recorder.samples,
            "errors": dict(recorder.errors),
            "lags": lags,
            "sms_delays": delays,
        }

    def _operation(self, name: str, recorder: Recorder) -> Any:
        if name == "echo":
            assert self._connections is not None
            return Echo(self._connections, recorder)
        if name.startswith("skeleton"):
            assert self._connections is not None
            return Skeleton(self._connections, recorder, verify_only=name == "skeleton_verify")
        assert self._sesame is not None
        return {
            "start": self._sesame.start_phase,
            "verify": self._sesame.verify_phase,
            "flows": self._sesame.flow_phase,
            "flows_half": self._sesame.flow_phase,
        }[name](recorder)

    async def settle(self, limit: float) -> dict[str, Any]:
        """The SMS of every challenge the start phase opened, waited for at most `limit` seconds."""
        assert self._sesame is not None
        missing = await self._sesame.sms_of_opened(limit)
        delays, self._sesame.sms_delays[:] = list(self._sesame.sms_delays), []
        return {"missing": missing, "sms_delays": delays}

    async def close(self) -> dict[str, Any]:
        """Close the connections and stop following the SMS file."""
        self._stop.set()
        if self._follower is not None:
            await self._follower
            self._follower = None
        if self._connections is not None:
            await self._connections.close()
            self._connections = None
        self._sesame = None
        return {}


def _pids(quota: dict[str, int]) -> dict[int, int]:
    """A quota as JSON carries it (pids as strings) back to pids."""
    return {int(pid): count for pid, count in quota.items()}


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    client = Client()
    out = sys.stdout.buffer
    while line := await reader.readline():
        command: dict[str, Any] = json.loads(line)
        do = command.pop("do")
        if do == "exit":
            break
        answer = await getattr(client, do)(**command)
        out.write(json.dumps({"pid": os.getpid(), **answer}).encode() + b"\n")
        out.flush()
    await client.close()


def main() -> None:
    """Answer commands until told to exit, or until standard input closes."""
    uvloop.run(_serve())


if __name__ == "__main__":
    main()

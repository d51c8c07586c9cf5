"""CPU and memory of a phase: per process and per role, and what the rest of the machine was doing.

`other_busy_cores` is the machine's busy time over the phase minus our processes' own, per second: on a
quiet machine it is near 0; when other work shares the cores (other test runs, builds), the figures of
that phase were measured on a loaded machine and say so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.procs import MachineTicks, Process, cpu_seconds, memory, run_queue_seconds


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """One process over one phase."""

    pid: int
    role: str
    cpu_seconds: float
    run_queue_seconds: float  # runnable, waiting for a core (bench.procs.run_queue_seconds)
    rss_mb: float
    peak_rss_mb: float


@dataclass(frozen=True, slots=True)
class Usage:
    """Every measured process over one phase, and the machine's other load."""

    seconds: float
    processes: list[ProcessUsage]
    cpu_seconds: dict[str, float]
    run_queue_seconds: dict[str, float]
    machine_busy_cores: float
    other_busy_cores: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU counters at the start of a phase."""

    at: float
    cpu: dict[int, float]
    waited: dict[int, float]
    machine: MachineTicks

    @staticmethod
    def take(processes: list[Process]) -> Snapshot:
        """The counters of `processes` and of the machine, now."""
        return Snapshot(
            at=time.perf_counter(),
            cpu={p.pid: cpu_seconds(p.pid) for p in processes},
            waited={p.pid: run_queue_seconds(p.pid) for p in processes},
            machine=MachineTicks.now(),
        )

    def usage(self, processes: list[Process]) -> Usage:
        """What `processes` (read again now: a process born during the phase counts from 0) used since."""
        seconds = time.perf_counter() - self.at
        machine = MachineTicks.now()
        measured = []
        for process in processes:
            used = cpu_seconds(process.pid) - self.cpu.get(process.pid, 0.0)
            # A thread that ended in the phase takes its count with it: never below 0.
            waited = max(0.0, run_queue_seconds(process.pid) - self.waited.get(process.pid, 0.0))
            mem = memory(process.pid)
            measured.append(
                ProcessUsage(
                    process.pid, process.role, round(used, 3), round(waited, 3), mem.rss_mb, mem.peak_mb
                )
            )
        by_role: dict[str, float] = {}
        waited_by_role: dict[str, float] = {}
        for item in measured:
            by_role[item.role] = round(by_role.get(item.role, 0.0) + item.cpu_seconds, 3)
            waited_by_role[item.role] = round(waited_by_role.get(item.role, 0.0) + item.run_queue_seconds, 3)
        busy = (machine.busy - self.machine.busy) / seconds if seconds > 0 else 0.0
        ours = sum(by_role.values()) / seconds if seconds > 0 else 0.0
        return Usage(
            seconds=round(seconds, 3),
            processes=measured,
            cpu_seconds=by_role,
            run_queue_seconds=waited_by_role,
            machine_busy_cores=round(busy, 2),
            other_busy_cores=round(max(0.0, busy - ours), 2),
        )

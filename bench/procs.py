"""What the kernel says about the processes under test and the machine: CPU seconds, RSS, busy cores.

Everything comes from /proc (Linux), read between phases: no sampling thread competes with the load.
CPU seconds are utime + stime of /proc/<pid>/stat, so a process's own threads (gRPC's pollers, the HSM
thread) count, and its children do not (Redis is measured as its own process).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Process:
    """One process of the run, named by its role: `server`, `redis`, `echo` or `client`."""

    pid: int
    role: str


@dataclass(frozen=True, slots=True)
class Memory:
    """Resident set of a process now and at its peak, in MiB."""

    rss_mb: float
    peak_mb: float


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    text = (_PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far; 0.0 when it is gone."""
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12).
    return (int(fields[11]) + int(fields[12])) / _TICKS


def run_queue_seconds(pid: int) -> float:
    """How long the threads of `pid` alive now have waited, runnable, for a core (the second field of each
    /proc/<pid>/task/<tid>/schedstat); 0.0 when it is gone or the kernel keeps no such count.

    On a machine whose cores the load client shares, a call's latency holds every such wait of the processes
    it crosses: the client, a worker, Redis (each wake of Redis to read a socket can wait behind the others'
    slices).
    """
    waited = 0
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in (_PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                waited += int((task / "schedstat").read_text().split()[1])
    return waited / 1e9


def memory(pid: int) -> Memory:
    """VmRSS and VmHWM of `pid`; zeros when it is gone."""
    try:
        status = (_PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return Memory(0.0, 0.0)
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return Memory(
        rss_mb=round(int(values.get("VmRSS", 0)) / 1024, 1),
        peak_mb=round(int(values.get("VmHWM", 0)) / 1024, 1),
    )


def _command(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def command_line(pid: int) -> list[str]:
    """The argv of `pid` as it shows it now (redis-server rewrites its own title)."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def descendants(root: int) -> list[int]:
    """`root` and every process below it, parents first."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return found


def tree(root: int, role: str) -> list[Process]:
    """The processes of a server started as `root`: redis-server children are `redis`, the rest `role`."""
    return [
        Process(pid, "redis" if _command(pid).startswith("redis-server") else role)
        for pid in descendants(root)
    ]


LISTEN, ESTABLISHED = "0A", "01"  # TCP states as /proc/net/tcp writes them


def sockets(state: str) -> list[tuple[int, int, int]]:
    """(local port, remote port, inode) of this machine's TCP sockets in `state` (IPv4 and IPv6 tables:
    gRPC binds dual-stack sockets)."""
    found = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (_PROC / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == state:
                    found.append((_port(fields[1]), _port(fields[2]), int(fields[9])))
    return found


def _port(address: str) -> int:
    """The port of /proc/net/tcp's `ADDRESS:PORT` (hexadecimal)."""
    return int(address.rsplit(":", 1)[1], 16)


def socket_inodes(pid: int | str) -> set[int]:
    """The socket inodes among a process's descriptors (empty when it is gone or unreadable)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in (_PROC / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError):
                target = str(fd.readlink())
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def listeners(port: int) -> int:
    """How many sockets listen on TCP `port`.

    With SO_REUSEPORT each worker holds its own listening socket, and the kernel spreads new connections
    only over the sockets that exist when they arrive.
    """
    return sum(1 for local, _, _ in sockets(LISTEN) if local == port)


@dataclass(frozen=True, slots=True)
class MachineTicks:
    """Busy and total CPU time of the whole machine (first line of /proc/stat), in seconds."""

    busy: float
    total: float

    @staticmethod
    def now() -> MachineTicks:
        """The counters now."""
        values = [int(v) for v in (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
        idle = values[3] + values[4]  # idle + iowait
        return MachineTicks(busy=(sum(values) - idle) / _TICKS, total=sum(values) / _TICKS)


def describe_machine() -> dict[str, object]:
    """Cores, CPU model, kernel, Python and grpcio versions, and the load average before the run."""
    model = "unknown"
    for line in (_PROC / "cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": metadata.version("grpcio"),
        "protobuf": metadata.version("protobuf"),
        "loadavg_before": [float(v) for v in (_PROC / "loadavg").read_text().split()[:3]],
        "memory_total_mb": _memory_total_mb(),
    }


def _memory_total_mb() -> int:
    match = re.search(r"^MemTotal:\s+(\d+) kB", (_PROC / "meminfo").read_text(), re.MULTILINE)
    return int(match.group(1)) // 1024 if match else 0


__all__ = [
    "MachineTicks",
    "Memory",
    "Process",
    "command_line",
    "cpu_seconds",
    "describe_machine",
    "listeners",
    "memory",
    "run_queue_seconds",
    "tree",
]

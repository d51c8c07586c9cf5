"""Where a phase's Redis CPU goes: per command (INFO commandstats) and, with `--redis-scripts`, per script.

INFO commandstats counts every command, those a script runs too (so `evalsha` holds each script's whole
time and `xinfo|stream` the share of it spent in XINFO STREAM). The per-script figures come from the slow
log with a threshold of 0 (every command logged with its duration), read after the phase and named by the
scripts' SHA-1: that logging costs Redis CPU itself, so it is off unless asked for, and a phase measured
with it says so in its record.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from sesame.clients.redis_scripts import Scripts
from sesame.clients.risk_program import compiled
from sesame.server.domain.risk_rules import default_rules

SLOWLOG_KEPT = 1_000_000  # entries; more than one phase's commands on this machine


def _stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    info = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in info.items()
        if isinstance(v, dict)
    }


def _persistence(client: redis.Redis) -> dict[str, int]:
    info = client.info("persistence") | client.info("stats")
    return {
        "aof_rewrites": int(info.get("aof_rewrites", 0)),
        "total_forks": int(info.get("total_forks", 0)),
        "latest_fork_usec": int(info.get("latest_fork_usec", 0)),
        "aof_last_rewrite_time_sec": int(info.get("aof_last_rewrite_time_sec", -1)),
        "aof_rewrite_in_progress": int(info.get("aof_rewrite_in_progress", 0)),
        "aof_delayed_fsync": int(info.get("aof_delayed_fsync", 0)),
        "aof_current_size": int(info.get("aof_current_size", 0)),
    }


def script_names() -> dict[str, str]:
    """SHA-1 -> script name, as `sesame` registers them (the pieces included), and Start's script with the
    default risk rules' program in its text (decision 0076), which `sesame serve` runs by default."""
    scripts = Scripts(aioredis.Redis())  # registering computes each SHA-1; nothing is sent
    names = {script.sha: name for name, script in scripts._scripts.items()}  # noqa: SLF001
    return names | {scripts.sha("open_challenge", compiled(default_rules())): "open_challenge"}


@dataclass
class RedisCosts:
    """INFO commandstats (and the slow log, when `scripts`) around one phase."""

    url: str
    scripts: bool = False

    def __post_init__(self) -> None:
        self._client = redis.Redis.from_url(self.url)
        self._before: dict[str, tuple[int, int]] = {}
        self._persisted: dict[str, int] = {}

    def start(self) -> None:
        """Read the counters (and empty the slow log, logging every command from now on)."""
        if self.scripts:
            self._client.config_set("slowlog-max-len", SLOWLOG_KEPT)
            self._client.config_set("slowlog-log-slower-than", 0)
            self._client.slowlog_reset()
        self._before = _stats(self._client)
        self._persisted = _persistence(self._client)

    def stop(self, ops: int) -> dict[str, Any]:
        """Per operation: calls and µs of each command that ran, biggest first; per script with `scripts`."""
        after = _stats(self._client)
        done = max(ops, 1)
        commands: dict[str, dict[str, float]] = {}
        for name, (calls, usec) in after.items():
            calls0, usec0 = self._before.get(name, (0, 0))
            if calls - calls0 <= 0 or name in ("info", "config|set", "slowlog|reset", "slowlog|get"):
                continue
            commands[name] = {
                "calls_per_op": round((calls - calls0) / done, 3),
                "us_per_op": round((usec - usec0) / done, 1),
            }
        record: dict[str, Any] = {
            "commands": dict(sorted(commands.items(), key=lambda kv: -kv[1]["us_per_op"])),
            "persistence": self._persistence(done),
        }
        if self.scripts:
            record["scripts"] = self._scripts(done)
            self._client.config_set("slowlog-log-slower-than", 10_000)
            self._client.slowlog_reset()
        self._client.close()
        return record

    def _persistence(self, done: int) -> dict[str, float | None]:
        """What Redis's persistence did in the phase: AOF rewrites (each a fork, and a child that takes a core
        for as long as it writes: on a 2-core machine, a stall of the whole run), the last fork's length, and
        fsyncs the AOF had to delay (the disk was behind). A rewrite still running at the end counts. And the
        bytes the AOF grew by per operation (what Redis writes, and what brings the next rewrite), when
        no rewrite ran (a rewrite starts the count again: None)."""
        before, after = self._persisted, _persistence(self._client)
        forks = after["total_forks"] - before["total_forks"]
        rewrites = after["aof_rewrites"] - before["aof_rewrites"] + after["aof_rewrite_in_progress"]
        grown = after["aof_current_size"] - before["aof_current_size"]
        return {
            "aof_rewrites": rewrites,
            "aof_bytes_per_op": round(grown / done) if rewrites == 0 else None,
            "forks": forks,
            "last_fork_ms": round(after["latest_fork_usec"] / 1000, 1) if forks else 0.0,
            "last_rewrite_s": after["aof_last_rewrite_time_sec"] if forks else 0,
            "aof_delayed_fsyncs": after["aof_delayed_fsync"] - before["aof_delayed_fsync"],
        }

    def _scripts(self, done: int) -> dict[str, dict[str, float]]:
        names = script_names()
        calls: dict[str, int] = defaultdict(int)
        usec: dict[str, int] = defaultdict(int)
        for entry in self._client.slowlog_get(SLOWLOG_KEPT):
            argv = entry["command"].split(b" ")
            if argv[0].lower() != b"evalsha" or len(argv) < 2:
                continue
            name = names.get(argv[1].decode(), argv[1].decode()[:12])
            calls[name] += 1
            usec[name] += int(entry["duration"])
        return {
            name: {
                "calls_per_op": round(calls[name] / done, 3),
                "us_per_call": round(usec[name] / calls[name], 1),
                "us_per_op": round(usec[name] / done, 1),
            }
            for name in sorted(usec, key=lambda n: -usec[n])
        }

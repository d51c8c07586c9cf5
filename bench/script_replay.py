"""Redis's time in each Lua script, call by call, on a recorded workload replayed against a scratch Redis
(decision 0076): where `bench.scripts` measures the scripts under the real flows, this replays the same
calls, in the same order, against scripts read from any directory, so that two versions of a script, or one
with a part cut out, are compared on the very same calls.

`python -m bench.script_replay record FILE` runs `bench.scripts`' flows (its own Redis and SoftHSM) and
writes every script call (name, keys, arguments) to FILE (pickle). `python -m bench.script_replay replay
FILE [--lua DIR] [--no-aof] [--repeat N]` starts a fresh redis-server (EmbeddedRedis: AOF on unless
--no-aof), loads the scripts of DIR (default: this checkout's), replays the calls N times (each replay on a
fresh server), and prints per script: calls, median and mean µs per call (Redis's own duration of the
EVALSHA, from INFO commandstats after each call) and the µs of the commands it ran inside, and redis-server's
CPU over a second replay, pipelined with nothing else, per Start+Verify flow.
Compare runs made in the same conditions, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import re
import statistics
import tempfile
from collections import defaultdict
from hashlib import sha1
from pathlib import Path
from typing import Any

import redis

from bench import scripts as bench
from bench.backends import backends
from sesame.clients.redis_scripts import JOURNAL_PIECE, PROGRAM_LINE, Scripts
from sesame.clients.redis_server import EmbeddedRedis

_INCLUDE = re.compile(r"^--#include (\S+)$", re.MULTILINE)
_LUA = Path(__file__).resolve().parent.parent / "clients" / "sesame" / "clients" / "lua"
_BATCH = 64


def _field(value: Any) -> bytes:
    """As redis-py encodes an argument."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


def record(path: Path, flows: int, warm: int) -> None:
    """Run bench.scripts' flows, writing every script call to `path`."""
    calls: list[tuple[str, list[bytes], list[bytes], str]] = []
    run, run_each = Scripts._run, Scripts.run_each  # noqa: SLF001

    async def recorded_run(self: Scripts, name: str, keys: Any, args: Any, program: str = "") -> Any:
        calls.append((name, [_field(k) for k in keys], [_field(a) for a in args], program))
        if not program:  # as a build without programs in scripts' text (before decision 0076) runs it
            return await run(self, name, keys, args)
        return await run(self, name, keys, args, program)

    async def recorded_each(self: Scripts, name: str, each: Any) -> Any:
        for keys, args in each:
            calls.append((name, [_field(k) for k in keys], [_field(a) for a in args], ""))
        return await run_each(self, name, each)

    Scripts._run = recorded_run  # type: ignore[method-assign]  # noqa: SLF001
    Scripts.run_each = recorded_each  # type: ignore[method-assign,assignment]
    args = argparse.Namespace(flows=flows, rounds=1, warm=warm, users=64, per_script=False, json=None)

    with backends("sesame-replay-record-") as (root, server, keystore):
        asyncio.run(bench._run(args, server, keystore, root))  # noqa: SLF001
    path.write_bytes(pickle.dumps({"flows": flows + warm, "calls": calls}))
    print(f"{len(calls)} calls over {flows + warm} flows in {path}")


def texts(lua: Path) -> dict[str, str]:
    """Each script's text as Scripts assembles it on one server (no cluster prefix)."""
    pieces = {p.name: p.read_text(encoding="utf-8") for p in lua.glob("_*.lua")}
    return {
        p.stem: pieces[JOURNAL_PIECE]
        + _INCLUDE.sub(lambda m: pieces[m.group(1)], p.read_text(encoding="utf-8"))
        for p in lua.glob("*.lua")
        if not p.name.startswith("_")
    }


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _commandstats(info: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """INFO commandstats' calls and µs per command (as redis-py parses it)."""
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in info.items()
        if isinstance(v, dict)
    }


def replay_once(
    workload: dict[str, Any], lua: Path, *, aof: bool, timed: bool
) -> tuple[dict[str, list[int]], dict[str, list[int]], float, int]:
    """Per script, each call's EVALSHA µs and the µs of the commands it ran (`timed`: INFO commandstats
    after every call, one call at a time; else big pipelines, nothing else sent), redis-server's CPU
    seconds over the replay, and the errors answered."""
    scripts = texts(lua)
    shas: dict[tuple[str, str], str] = {}
    for name, _, _, program in workload["calls"]:
        if (name, program) not in shas:
            text = (
                scripts[name]
                if not program
                else scripts[name].replace(PROGRAM_LINE, f"local RISK_PROGRAM = {program}\n", 1)
            )
            shas[(name, program)] = sha1(text.encode(), usedforsecurity=False).hexdigest()
            scripts[f"{name} {len(shas)}"] = text
    durations: dict[str, list[int]] = defaultdict(list)
    inner: dict[str, list[int]] = defaultdict(list)
    errors = 0
    extra = () if aof else ("--appendonly", "no")
    with (
        tempfile.TemporaryDirectory(prefix="sesame-replay-") as directory,
        EmbeddedRedis(Path(directory), extra_arguments=extra) as server,
    ):
        pid = int(server.pid_file.read_text())
        client = redis.Redis.from_url(server.url)
        for text in scripts.values():
            client.script_load(text)
        calls = workload["calls"]
        cpu = _cpu(pid)
        if timed:
            before = _commandstats(client.info("commandstats"))
            for name, keys, args, program in calls:
                pipe = client.pipeline(transaction=False)
                pipe.execute_command("EVALSHA", shas[(name, program)], len(keys), *keys, *args)  # type: ignore[no-untyped-call]
                pipe.info("commandstats")
                reply, raw = pipe.execute(raise_on_error=False)
                errors += isinstance(reply, Exception)
                after = _commandstats(raw)
                spent = {c: after[c][1] - before.get(c, (0, 0))[1] for c in after}
                durations[name].append(spent.pop("evalsha", 0))
                inner[name].append(sum(us for c, us in spent.items() if c != "info"))
                before = after
        else:
            for start in range(0, len(calls), _BATCH):
                pipe = client.pipeline(transaction=False)
                for name, keys, args, program in calls[start : start + _BATCH]:
                    pipe.execute_command("EVALSHA", shas[(name, program)], len(keys), *keys, *args)  # type: ignore[no-untyped-call]
                errors += sum(isinstance(r, Exception) for r in pipe.execute(raise_on_error=False))
        cpu = _cpu(pid) - cpu
        _print_marks(client)
        client.close()
    return durations, inner, cpu, errors


def _print_marks(client: redis.Redis) -> None:
    """What a script instrumented with `__mark(name)` (a copy made for a measure, decision 0076) counted in
    its `prof:us` and `prof:n` hashes: µs per pass in each segment, marks' own cost included."""
    spent, passes = client.hgetall("prof:us"), client.hgetall("prof:n")
    for name in sorted(spent):
        label = name.decode() if isinstance(name, bytes) else name
        print(f"    {label:54} {int(spent[name]) / int(passes[name]):7.1f} µs  x{int(passes[name])}")


def replay(path: Path, lua: Path, *, aof: bool, repeat: int) -> None:
    workload = pickle.loads(path.read_bytes())  # noqa: S301 (our own file)
    flows = workload["flows"]
    for n in range(repeat):
        _, _, cpu, errors = replay_once(workload, lua, aof=aof, timed=False)
        durations, inner, _, errors_timed = replay_once(workload, lua, aof=aof, timed=True)
        total = sum(sum(d) for d in durations.values())
        print(
            f"replay {n + 1}: {lua} aof={'on' if aof else 'off'}: redis CPU {cpu / flows * 1e6:.0f} µs/flow"
            f" (pipelined), evalsha {total / flows:.0f} µs/flow (one at a time),"
            f" {errors}+{errors_timed} errors"
        )
        print(f"  {'script':24} {'calls':>7} {'median':>7} {'inner':>7} {'outside':>7} {'mean':>7}")
        for name, d in sorted(durations.items(), key=lambda kv: -sum(kv[1])):
            outside = [us - within for us, within in zip(d, inner[name], strict=True)]
            print(
                f"  {name:24} {len(d):7d} {statistics.median(d):7.0f} {statistics.median(inner[name]):7.0f}"
                f" {statistics.median(outside):7.0f} {statistics.fmean(d):7.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("file", type=Path)
    rec.add_argument("--flows", type=int, default=800)
    rec.add_argument("--warm", type=int, default=800)
    rep = sub.add_parser("replay")
    rep.add_argument("file", type=Path)
    rep.add_argument("--lua", type=Path, default=_LUA)
    rep.add_argument("--no-aof", dest="aof", action="store_false")
    rep.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.what == "record":
        record(args.file, args.flows, args.warm)
    else:
        replay(args.file, args.lua, aof=args.aof, repeat=args.repeat)


if __name__ == "__main__":
    main()

"""What one Redis script costs a gRPC worker through redis-py's pool and through the lane (decision 0063).

Three servers in turn, each two grpc.aio workers on uvloop sharing one port (as `sesame serve` runs), whose
one method answers its request after doing, per call: nothing (the echo floor); one EVALSHA through a
redis-py client as the store makes it (`redis_connect.connect`: hiredis, the pool); one EVALSHA on that
client's lane (`redis_lane`). A redis-server child on a private port holds what the script writes. The load:
`--concurrency` calls in flight over `--connections` connections for `--seconds`, two calls per operation as
bench.load's echo phase. Prints per configuration the rate and the CPU per call of the servers (from /proc),
of Redis and of this client.

    .venv/bin/python -m bench.redis_client_cost --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import cast

import grpc
import redis.asyncio as aioredis
import uvloop

from bench.echo_server import METHOD, SERVICE
from sesame.clients.redis_server import EmbeddedRedis

# What a small transition writes: a hash with its expiry and a stream entry.
SCRIPT = """
redis.call('HSET', KEYS[1], 'a', ARGV[1], 'b', ARGV[2])
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'n', ARGV[1])
return {'ok', ARGV[1]}
"""
KINDS = ("echo", "pool", "lane")


def _worker(port: int, kind: str, url: str) -> None:
    uvloop.run(_serve(port, kind, url))


async def _serve(port: int, kind: str, url: str) -> None:
    from sesame.clients.redis_connect import connect  # noqa: PLC0415 (in the spawned worker)
    from sesame.clients.redis_lane import lane_of  # noqa: PLC0415

    client = cast("aioredis.Redis", connect(url, timeout=5.0))  # one server: a URL of EmbeddedRedis
    sha = await client.script_load(SCRIPT)
    lane = lane_of(client)
    counter = 0

    async def answer(request: bytes, _context: object) -> bytes:
        nonlocal counter
        counter += 1
        args = (sha, 2, f"bench:h:{os.getpid()}:{counter % 1000}", "bench:s", counter, "b" * 16)
        if kind == "pool":
            await client.evalsha(*args)
        elif kind == "lane":
            await lane.call("EVALSHA", *args)
        return request

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(answer)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def free_port() -> int:
    """A loopback port free at this instant."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _ready(port: int) -> None:
    """Return once the workers answer (their boot is not counted)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        for _ in range(8):
            await call(b"warm", wait_for_ready=True, timeout=60)


async def _load(port: int, seconds: float, concurrency: int, connections: int) -> int:
    options = (("grpc.use_local_subchannel_pool", 1),)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) for _ in range(connections)]
    calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
        channel.unary_unary(METHOD) for channel in channels
    ]
    done = 0
    stop = time.monotonic() + seconds

    async def loop(i: int) -> None:
        nonlocal done
        call = calls[i % connections]
        while time.monotonic() < stop:
            await call(b"hello")
            await call(b"hello")
            done += 1

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    for channel in channels:
        await channel.close()
    return done


def main() -> None:
    """Run each configuration in turn (`--rounds` times, interleaved) and print one line each."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    spawn = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="sesame-redis-cost-") as directory,
        EmbeddedRedis(Path(directory)) as redis,
    ):
        print("kind   pairs/s  server ms/call  redis ms/call  client ms/call  load")
        for _ in range(args.rounds):
            for kind in KINDS:
                port = free_port()
                workers = [spawn.Process(target=_worker, args=(port, kind, redis.url)) for _ in range(2)]
                for worker in workers:
                    worker.start()
                asyncio.run(_ready(port))
                redis_pid = int(redis.pid_file.read_text())
                before = (
                    [_cpu_seconds(w.pid or 0) for w in workers],
                    _cpu_seconds(redis_pid),
                    time.process_time(),
                )
                started = time.monotonic()
                pairs = asyncio.run(_load(port, args.seconds, args.concurrency, args.connections))
                elapsed = time.monotonic() - started
                server = sum(_cpu_seconds(w.pid or 0) for w in workers) - sum(before[0])
                calls = 2 * pairs
                print(
                    f"{kind:5s} {pairs / elapsed:8.1f}  {server / calls * 1000:14.3f}  "
                    f"{(_cpu_seconds(redis_pid) - before[1]) / calls * 1000:13.3f}  "
                    f"{(time.process_time() - before[2]) / calls * 1000:14.3f}  {os.getloadavg()[0]:4.1f}",
                    flush=True,
                )
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.join()


if __name__ == "__main__":
    main()

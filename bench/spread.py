"""Connections placed evenly over a server's workers, as a caller's many replicas spread on average.

SO_REUSEPORT hands each new connection to one of the workers' listening sockets by a hash of its addresses
and ports: calls follow their connection, so a bench of 4 connections on 2 workers put 3 or 4 of them on
one worker in most runs, and a closed-loop phase measured one core (docs/benchmarks.md, 2026-12-01). A bank's
callers, many replicas with a connection or more each, spread over the workers on average; a bench with a
handful of connections only does so by luck. So each client process connects, looks up which worker
accepted (the worker whose descriptors hold the accepted socket: /proc, this machine only), and closes and
connects again while that worker already has its share. Without the workers' pids (an older server, or
/proc unreadable), the connections are kept where they landed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import grpc

from bench.procs import ESTABLISHED, LISTEN, socket_inodes, sockets

ACCEPT_WAITS = 100  # times 10 ms: how long a connection's accept is looked for
TRIES_PER_CONNECTION = 24  # a fair coin over 2 workers misses 24 times in a row once in 16 million


def _own_ports(server_port: int) -> set[int]:
    """This process's local ports of its connections to `server_port`."""
    mine = socket_inodes("self")
    return {local for local, remote, inode in sockets(ESTABLISHED) if remote == server_port and inode in mine}


def accepting_worker(server_port: int, client_port: int, workers: Sequence[int]) -> int | None:
    """Which of `workers` (pids) holds the server side of the connection from `client_port`, if any."""
    accepted = {
        inode
        for local, remote, inode in sockets(ESTABLISHED)
        if local == server_port and remote == client_port
    }
    for pid in workers:
        if accepted & socket_inodes(pid):
            return pid
    return None


async def spread_channels(
    address: str, quota: dict[int, int], options: Sequence[tuple[str, int]]
) -> tuple[list[grpc.aio.Channel], dict[int, int]]:
    """As many connected channels to `address` as `quota` counts, each server process (pid) taking at most
    its count (0: none; a process `quota` does not name is not looked for); and how many each took. A
    connection that lands where the quota is full is closed and made again (`TRIES_PER_CONNECTION` times,
    then kept where it lands)."""
    port = int(address.rsplit(":", 1)[1])
    workers = list(quota)
    taken: Counter[int] = Counter()
    channels: list[grpc.aio.Channel] = []
    for _ in range(sum(quota.values())):
        for tries in range(TRIES_PER_CONNECTION):
            before = _own_ports(port)
            channel = grpc.aio.insecure_channel(address, options=options)
            await channel.channel_ready()
            worker = await _accepted_by(port, _own_ports(port) - before, workers)
            if worker is None or taken[worker] < quota.get(worker, 0) or tries == TRIES_PER_CONNECTION - 1:
                channels.append(channel)
                if worker is not None:
                    taken[worker] += 1
                break
            await channel.close()
    return channels, dict(taken)


async def _accepted_by(port: int, new: set[int], workers: Sequence[int]) -> int | None:
    """The worker that accepted the connection from the one port in `new`: a channel is ready once the
    client's handshake is done, maybe before the server's accept, so it is looked for a little while."""
    if len(new) != 1:
        return None
    (client_port,) = new
    for _ in range(ACCEPT_WAITS):
        if (worker := accepting_worker(port, client_port, workers)) is not None:
            return worker
        await asyncio.sleep(0.01)
    return None


def quotas(workers: Sequence[int], connections: Sequence[int]) -> list[dict[int, int]]:
    """Each client process's share of each worker (pid -> connections), when the processes open
    `connections[k]` each: the run's connections dealt to the workers in turn, so no worker takes more than
    one above another, and each process's own connections spread too."""
    dealt: list[dict[int, int]] = []
    turn = 0
    for count in connections:
        share: Counter[int] = Counter(dict.fromkeys(workers, 0))  # every worker named: one with 0 is full
        for _ in range(count):
            share[workers[turn % len(workers)]] += 1
            turn += 1
        dealt.append(dict(share))
    return dealt


def listening_workers(port: int, pids: Sequence[int]) -> list[int]:
    """Those of `pids` that hold a socket listening on `port` (each worker of a SO_REUSEPORT server its
    own), in pid order."""
    inodes = {inode for local, _, inode in sockets(LISTEN) if local == port}
    return sorted(pid for pid in pids if inodes & socket_inodes(pid))

"""`make bench`'s connections placed evenly over the server's workers (bench/spread.py).

SO_REUSEPORT hands a connection to a worker by a hash of its ports: 4 connections on 2 workers landed 3-1 or
4-0 in most runs, and a phase measured one core. The placement is checked here against the kernel's own
tables (which process holds each accepted socket), read independently of the code under test.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench import servers
from bench.spread import listening_workers, quotas, spread_channels

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

_OWN = (("grpc.use_local_subchannel_pool", 1),)


def _accepted_per_process(port: int, pids: list[int]) -> Counter[int]:
    """How many established connections to `port` each of `pids` holds, from /proc (not bench.spread)."""
    inodes: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes[int(fields[9])] = port
    held: Counter[int] = Counter()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                held[pid] += 1
    return held


def test_the_quotas_deal_every_connection_and_no_worker_takes_two_more() -> None:
    """Pure logic: each process's share adds up to its connections, the workers' totals differ by one at
    most, and a process with several connections spreads them too."""
    assert quotas([11, 22], [1, 1]) == [{11: 1, 22: 0}, {11: 0, 22: 1}]
    for workers in ([11], [11, 22], [11, 22, 33]):
        for connections in ([1], [4], [1, 1], [2, 2], [3, 2, 2], [16, 16], [5]):
            dealt = quotas(workers, connections)
            assert [sum(q.values()) for q in dealt] == connections
            assert all(set(q) == set(workers) for q in dealt)
            totals = Counter[int]()
            for share in dealt:
                totals.update(share)
                mine = [share.get(w, 0) for w in workers]
                assert max(mine) - min(mine) <= 1, (workers, connections, share)
            counts = [totals.get(w, 0) for w in workers]
            assert max(counts) - min(counts) <= 1, (workers, connections, counts)


async def test_connections_land_evenly_on_a_two_worker_server() -> None:
    """Eight connections to a two-worker echo server (SO_REUSEPORT, as `sesame serve`): four on each, as
    /proc sees them; the one process of the tree that does not listen (none here) takes none."""
    with servers.echo(2) as server:
        port = int(server.address.rsplit(":", 1)[1])
        pids = [p.pid for p in server.processes()]
        workers = listening_workers(port, pids)
        assert len(workers) == 2
        (quota,) = quotas(workers, [8])
        channels, placed = await spread_channels(server.address, quota, _OWN)
        try:
            assert len(channels) == 8
            assert placed == {workers[0]: 4, workers[1]: 4}
            assert _accepted_per_process(port, pids) == Counter({workers[0]: 4, workers[1]: 4})
        finally:
            for channel in channels:
                await channel.close()


async def test_a_quota_no_worker_can_meet_still_gives_every_connection() -> None:
    """A quota that no placement can meet (one connection for a stale pid, none for the second worker):
    every connection is still made; the second lands on a full worker each time, and is kept where its
    last try landed."""
    with servers.echo(2) as server:
        port = int(server.address.rsplit(":", 1)[1])
        workers = listening_workers(port, [p.pid for p in server.processes()])
        channels, placed = await spread_channels(server.address, {workers[0]: 1, workers[1]: 0, 1: 1}, _OWN)
        try:
            assert len(channels) == 2
            assert placed[workers[0]] >= 1
            assert sum(placed.values()) == 2
            assert _accepted_per_process(port, workers) == Counter(placed)
        finally:
            for channel in channels:
                await channel.close()

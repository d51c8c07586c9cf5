"""The ports `sesame serve` claims stay bound until its workers have them (decision 0021), on real sockets.

A fresh-clone run failed once when the supervisor's /metrics, asked on port 0, was given the gRPC port the
supervisor had claimed (locked) but not bound: its worker then could not listen there.
"""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys

import pytest

from sesame.server.domain.errors import ConfigurationError
from sesame.server.port_claim import PortClaim
from tests.support.ports import free_port


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _bind(port: int, *, reuse_address: bool = False, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket()
    if reuse_address:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


@pytest.mark.parametrize("asked", ["fixed", "any"])
def test_a_claimed_port_is_bound(asked: str) -> None:
    """A socket without SO_REUSEPORT or SO_REUSEADDR cannot bind a claimed port."""
    with PortClaim() as claim:
        claimed = claim.claim(f"127.0.0.1:{free_port() if asked == 'fixed' else 0}", "SESAME_GRPC_ADDR")

        with pytest.raises(OSError) as refused:
            _bind(_port(claimed))
    assert refused.value.errno == errno.EADDRINUSE


# Run in a network namespace of our own, whose ephemeral range is ten ports: half of them claimed, then a
# hundred listeners on port 0 (SO_REUSEADDR, as the supervisor's /metrics binds), each closed before the
# next. The namespace's loopback is down: the wildcard address binds all the same.
_NARROW_RANGE = """
import json, socket
from pathlib import Path
from sesame.server.port_claim import PortClaim

Path("/proc/sys/net/ipv4/ip_local_port_range").write_text("40000 40009")
with PortClaim() as claim:
    claimed = [claim.claim("0.0.0.0:0", "SESAME_GRPC_ADDR").rpartition(":")[2] for _ in range(5)]
    picked = []
    for _ in range(100):
        with socket.create_server(("0.0.0.0", 0)) as listener:
            picked.append(listener.getsockname()[1])
print(json.dumps({"claimed": [int(port) for port in claimed], "picked": picked}))
"""


def test_port_0_listeners_are_never_given_a_claimed_port() -> None:
    """With half of the ephemeral ports claimed, listeners on port 0 get only the other half (with a claim
    that only locked its port, they were given the claimed ones too)."""
    namespace = ["unshare", "--map-root-user", "--net"]
    try:
        allowed = subprocess.run(
            [*namespace, "true"], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        pytest.skip("no unshare(1) here: a network namespace of the test's own cannot be made")
    if allowed.returncode != 0:  # a container that forbids user namespaces: an environment, not a defect
        pytest.skip(f"a network namespace of the test's own is refused here: {allowed.stderr.strip()}")
    result = subprocess.run(
        [*namespace, sys.executable, "-c", _NARROW_RANGE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)
    assert len(set(ports["claimed"])) == 5
    assert ports["picked"]
    assert set(ports["picked"]) <= set(range(40000, 40010)) - set(ports["claimed"])


def test_the_workers_bind_a_claimed_port_and_take_every_connection() -> None:
    """Workers bind the claimed port with SO_REUSEPORT; the supervisor's socket never listens, so every
    connection reaches a worker, and none is refused or left waiting while the claim is held."""
    with PortClaim() as claim:
        port = _port(claim.claim("127.0.0.1:0", "SESAME_GRPC_ADDR"))
        with pytest.raises(ConnectionRefusedError):  # no worker yet: refused, not queued on the claim
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        worker = _bind(port, reuse_address=True, reuse_port=True)
        with worker:
            worker.listen()
            worker.settimeout(2)
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    accepted, _ = worker.accept()
                    accepted.close()


def test_release_frees_the_port() -> None:
    """Once released (the workers have stopped), the port can be bound by anyone again."""
    with PortClaim() as claim:
        port = _port(claim.claim("127.0.0.1:0", "SESAME_GRPC_ADDR"))

    _bind(port).close()


def test_a_port_taken_by_a_socket_bound_without_listening_is_refused_naming_the_setting() -> None:
    """A port another process has bound (not yet listening) cannot be claimed: one line with the setting."""
    with _bind(free_port()) as taken, PortClaim() as claim:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError) as refused:
            claim.claim(f"127.0.0.1:{port}", "SESAME_HEALTH_ADDR")

    assert (
        str(refused.value)
        == f"cannot listen on 127.0.0.1:{port} (SESAME_HEALTH_ADDR): address already in use"
    )

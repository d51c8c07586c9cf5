"""The server pings a silent caller and closes the connection when no answer comes (decision 0081): a caller
whose host or NAT entry vanished (no FIN, no RST) frees its connection slot and its streams within
SESAME_KEEPALIVE_SECONDS + SESAME_KEEPALIVE_TIMEOUT_SECONDS, not at the connection's age (300 s).

The caller here is a raw HTTP/2 connection: the preface, an empty SETTINGS, the ACK of the server's
SETTINGS, then nothing, as a peer that is gone would. (The other side of keepalive, a caller's own pings
every 10 s taken without a GOAWAY, is tests/interop/test_compiled_clients.py's: grpc-go and grpc-java ping
as callers do.)
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.serve_process import ServeProcess, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

KEEPALIVE, TIMEOUT = 10, 1  # seconds (10 is the least the setting takes)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1


def _frame(kind: int, flags: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame on stream 0."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", 0) + payload


def _frames(sock: socket.socket, until: float) -> Iterator[tuple[int, int, float]]:
    """(type, flags, when) of each frame the server sends until it closes the connection or `until`."""
    buffer = b""
    while time.monotonic() < until:
        sock.settimeout(max(0.05, until - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            yield (-1, 0, time.monotonic())  # closed
            return
        buffer += chunk
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            yield (buffer[3], buffer[4], time.monotonic())
            buffer = buffer[9 + length :]


@pytest.fixture(name="pinging")
def _pinging(tmp_path: Path) -> Iterator[ServeProcess]:
    serving = start_serve(
        tmp_path / "var",
        settings={
            "SESAME_KEEPALIVE_SECONDS": str(KEEPALIVE),
            "SESAME_KEEPALIVE_TIMEOUT_SECONDS": str(TIMEOUT),
        },
    )
    yield serving
    serving.process.terminate()
    serving.process.wait(timeout=30)


def test_a_caller_that_stopped_answering_is_pinged_then_disconnected(pinging: ServeProcess) -> None:
    """After KEEPALIVE seconds of silence the server sends a PING; unanswered, the connection is closed
    within TIMEOUT more (with a margin for a loaded machine), long before its age."""
    host, port = pinging.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(PREFACE + _frame(SETTINGS, 0))
        opened = time.monotonic()
        seen: list[tuple[int, int, float]] = []
        acked = False
        for kind, flags, when in _frames(sock, opened + KEEPALIVE + TIMEOUT + 15):
            seen.append((kind, flags, when - opened))
            if kind == SETTINGS and not flags & ACK and not acked:
                sock.sendall(_frame(SETTINGS, ACK))  # the last thing this caller ever says
                acked = True
            if kind == -1:
                break
    pings = [at for kind, flags, at in seen if kind == PING and not flags & ACK]
    closed = [at for kind, _, at in seen if kind == -1]
    assert pings, seen
    assert KEEPALIVE - 1 <= pings[0] <= KEEPALIVE + 5, seen
    assert closed, f"still open {KEEPALIVE + TIMEOUT + 15} s after its last word: {seen}"
    assert pings[0] < closed[0] <= pings[0] + TIMEOUT + 5, seen

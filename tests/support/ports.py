"""Free loopback ports for the servers the tests start, and ports where nothing will ever listen."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


def free_port() -> int:
    """A loopback port nobody listens on now (bound, read and released: good enough on a test machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def dead_port() -> Iterator[int]:
    """A loopback port held bound, never listening, for the block: a connection there is refused at once,
    and no other server of the run is given it meanwhile (a port from `free_port` may be, and then answers).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]

"""A loopback relay to Redis that loses one answer on demand: the command ran, its reply never arrives.

Armed with a marker (a script's SHA-1), the relay passes the request that carries it to Redis, then cuts
that connection instead of passing Redis's reply back (a NOSCRIPT error is passed: the script did not run).
The client sees its connection die after Redis applied the script: what a Redis restart or a network cut
between the script and its answer does (decisions 0055, 0056), made exactly once, on a real Redis. Armed
with `keep`, the relay passes that share of the reply's first bytes before it cuts: a reply cut half-way
(decision 0062).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class ReplyCutter:
    """The relay's port, and how many answers it lost so far."""

    port: int
    cuts: int = 0
    _marker: bytes = b""
    _keep: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, marker: bytes, keep: float = 0.0) -> None:
        """Lose the answer to the next request that carries `marker` (once), all of it, or all but the
        share `keep` of its first bytes."""
        with self._lock:
            self._marker = marker
            self._keep = keep

    def carries(self, data: bytes) -> bool:
        with self._lock:
            return bool(self._marker) and self._marker in data

    def cut(self, reply: bytes) -> int | None:
        """How many of this reply's first bytes to pass before cutting, when it answers an armed request
        (disarming); None when it passes whole (also when the script did not run: NOSCRIPT)."""
        with self._lock:
            if not self._marker or reply.startswith(b"-NOSCRIPT"):
                return None
            self._marker = b""
            self.cuts += 1
            return int(len(reply) * self._keep)


@contextlib.contextmanager
def reply_cutter(target: int) -> Iterator[ReplyCutter]:
    """A relay on 127.0.0.1 to the Redis on port `target`; yields it (unarmed: it passes everything)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    cutter = ReplyCutter(listener.getsockname()[1])
    closing = threading.Event()
    pipes: list[socket.socket] = []

    def serve() -> None:
        while not closing.is_set():
            try:
                inside, _ = listener.accept()
            except TimeoutError:
                continue
            outside = socket.create_connection(("127.0.0.1", target))
            pipes.extend((inside, outside))
            armed = threading.Event()  # this connection sent the marked request: its next reply is lost
            threading.Thread(target=_requests, args=(cutter, inside, outside, armed), daemon=True).start()
            threading.Thread(target=_replies, args=(cutter, outside, inside, armed), daemon=True).start()

    door = threading.Thread(target=serve, daemon=True)
    door.start()
    try:
        yield cutter
    finally:
        closing.set()
        door.join()
        for pipe in pipes:
            pipe.close()
        listener.close()


def _requests(
    cutter: ReplyCutter, client: socket.socket, redis: socket.socket, armed: threading.Event
) -> None:
    with contextlib.suppress(OSError):
        while data := client.recv(65536):
            if cutter.carries(data):
                armed.set()
            redis.sendall(data)
    with contextlib.suppress(OSError):
        redis.shutdown(socket.SHUT_WR)


def _replies(
    cutter: ReplyCutter, redis: socket.socket, client: socket.socket, armed: threading.Event
) -> None:
    with contextlib.suppress(OSError):
        while data := redis.recv(65536):
            if armed.is_set() and (kept := cutter.cut(data)) is not None:
                client.sendall(data[:kept])
                for end in (client, redis):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)
                return
            armed.clear()
            client.sendall(data)
    with contextlib.suppress(OSError):
        client.shutdown(socket.SHUT_WR)

"""A loopback door to a port that lets no connection through for a while: a slow link, made on demand.

The door listens with no room in its accept queue and one connection of its own waiting there, so the
kernel drops every SYN to it and the client's connect() blocks, retrying (after 1 s, then 3 s), until the
door takes its own connection out after `delay`; from then on it relays each connection to the target.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def late_door(target: int, delay: float) -> Iterator[int]:
    """A port on 127.0.0.1 whose connections complete after `delay` seconds at the earliest, then reach
    `target`; yields the door's port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # the accept queue is full from now on
    closing = threading.Event()
    pipes: list[socket.socket] = [filler]

    def serve() -> None:
        if closing.wait(delay):
            return
        listener.accept()[0].close()  # the filler: room in the queue again, retried SYNs go through
        listener.settimeout(0.1)
        while not closing.is_set():
            try:
                inside, _ = listener.accept()
            except TimeoutError:
                continue
            outside = socket.create_connection(("127.0.0.1", target))
            pipes.extend((inside, outside))
            for source, sink in ((inside, outside), (outside, inside)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    door = threading.Thread(target=serve, daemon=True)
    door.start()
    try:
        yield port
    finally:
        closing.set()
        door.join()
        for pipe in pipes:
            pipe.close()
        listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)

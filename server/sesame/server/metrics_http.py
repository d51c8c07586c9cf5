"""`/metrics` over HTTP with bounds: few connections at once, each cut after a short life.

prometheus_client's `start_http_server` gives every connection a thread for as long as the peer keeps it,
with no timeout and no bound: a peer sending its request a byte a second (or nothing) held a thread and a
descriptor of the supervisor per connection, without end (2,000 such connections: 2,000 threads and
descriptors, +26 MB), in the process that restarts the workers and Redis, and whose threads count against
the container's process limit (decision 0084). Here a connection beyond `MAX_CONNECTIONS` is closed at
accept, and one still open after `CONNECTION_SECONDS` is shut down, whatever it was doing: a scrape takes
milliseconds.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Final
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

MAX_CONNECTIONS: Final = 32  # at once; Prometheus opens one per scrape, a few replicas scrape
CONNECTION_SECONDS: Final = 10.0  # from accept to close; Prometheus's own scrape timeout defaults to 10 s
_REAP_EVERY: Final = 0.5  # seconds between two looks for connections past their life

_Request = socket.socket | tuple[bytes, socket.socket]  # socketserver's type: a TCP server gets sockets


class _QuietHandler(WSGIRequestHandler):
    """Logs no request line: it is the peer's, and we keep our logs ours."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  # the stdlib's name
        """Nothing."""


class _BoundedServer(ThreadingWSGIServer):
    """A thread per connection, at most `MAX_CONNECTIONS` of them, none living past `CONNECTION_SECONDS`."""

    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        """Bind, and start with no connection open."""
        self._open: dict[socket.socket, float] = {}
        self._open_lock = threading.Lock()
        super().server_bind()

    def verify_request(self, request: _Request, client_address: object) -> bool:
        """Refuse (close) a connection beyond the bound; remember when the others came."""
        del client_address
        assert isinstance(request, socket.socket)
        with self._open_lock:
            if len(self._open) >= MAX_CONNECTIONS:
                return False
            self._open[request] = time.monotonic()
        return True

    def shutdown_request(self, request: _Request) -> None:
        """The connection is done (or refused): forget it, then close it."""
        assert isinstance(request, socket.socket)
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Between accepts (every `_REAP_EVERY` s at least): shut down the connections past their life.

        A shutdown wakes the thread blocked reading or writing it, which then closes it; under the lock, so
        a connection is never shut down after its thread closed it.
        """
        oldest = time.monotonic() - CONNECTION_SECONDS
        with self._open_lock:
            for connection, accepted in self._open.items():
                if accepted < oldest:
                    with contextlib.suppress(OSError):  # already gone from the peer's side
                        connection.shutdown(socket.SHUT_RDWR)


class BoundedMetricsServer:
    """`registry` served at `/metrics` (any path) on `host:port`, on a thread of its own."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        """Bind now (OSError if the address cannot be had) and start serving."""
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][
            0
        ]
        server_class = type("_Server", (_BoundedServer,), {"address_family": family})
        self._server: _BoundedServer = make_server(
            host, port, make_wsgi_app(registry), server_class, handler_class=_QuietHandler
        )
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_REAP_EVERY,), name="sesame-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

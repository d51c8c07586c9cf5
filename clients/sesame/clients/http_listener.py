"""`HttpListener`: one GET route (Kannel's delivery reports) on aiohttp's web server.

aiohttp parses HTTP; we set its limits: a request line or header field of at most HEAD_LIMIT bytes and
few header fields, HEAD_TIMEOUT seconds for a connection to send its request (aiohttp closes a
connection still idle by then), no body read, one answer per connection, at most MAX_CONNECTIONS open at
once (one more is closed as it is accepted: each holds a descriptor). aiohttp's access log, which
prints the request line and so the token, is off; our log shows the path and status, never the query.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from aiohttp import web

from sesame.server.domain.errors import ConfigurationError
from sesame.server.domain.log_quota import LogQuota

_log = logging.getLogger("sesame.http")


class _WithoutTheRequest(logging.Filter):
    """aiohttp logs a refused request with its parser's error, which quotes the request line (and so the
    token): keep the class of the error only, as a WARNING without traceback, once per class in the
    quota's window, the next line counting those held back (an outside audit's 1000 request lines over
    8 KiB wrote 1000 lines, Z4)."""

    def __init__(self, quota: LogQuota[str]) -> None:
        super().__init__()
        self._quota = quota

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        kind = type(error).__name__ if error else "?"
        held_back = self._quota.admit(kind)
        if held_back is None:
            return False
        more = self._quota.held_back(held_back, "such requests")
        record.msg, record.args = "HTTP request refused: %s%s", (kind, more)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


HEAD_LIMIT: Final = 8192  # bytes of the request line, and of each header field; Kannel's reports take ~300
HEAD_FIELDS: Final = 32  # header fields at most (Kannel sends 4)
HEAD_TIMEOUT: Final = 5.0  # seconds a connection has to send its request
# Connections open at once; one more is closed as it is accepted. Each holds a file descriptor of the worker
# whose HSM session and Redis connections need theirs: unbounded, a flood of idle connections (each kept
# HEAD_TIMEOUT) took them all and the worker's calls failed (decision 0055 bounded the gRPC port alike).
# Kannel makes a report's request and waits for its answer (a few milliseconds): far fewer at once.
MAX_CONNECTIONS: Final = 128
# A refused request (403, 404, 400...) is logged at most once in this many seconds per status, the next line
# counting those held back: one WARNING per request let a flood of forged reports (anyone who reaches the
# port, no token needed) write a line per request, 300 in 0.1 s, drowning the log and its alerts.
REFUSED_EVERY_SECONDS: Final = 60.0

# Where aiohttp's connection handler logs (instead of `aiohttp.server`), redacted and bounded alike: a request
# its parser refuses is logged at most once per class of error in REFUSED_EVERY_SECONDS, per worker.
_server_log = logging.getLogger("sesame.http.server")
_server_log.addFilter(_WithoutTheRequest(LogQuota(REFUSED_EVERY_SECONDS)))


class _Refused(asyncio.Protocol):
    """A connection beyond MAX_CONNECTIONS: closed at once, before a byte of it is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):
            transport.abort()  # at once, no FIN handshake to wait for
        else:  # pragma: no cover (a TCP server's transports are Transports)
            transport.close()


class _Bounded:
    """aiohttp's protocol factory, refusing a connection while `limit` are open."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self._limit = limit
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self._server.connections) >= self._limit:
            self.refused += 1
            return _Refused()
        return self._server()


@dataclass(frozen=True, slots=True)
class Reply:
    """What the route answers: a status and a short text body."""

    status: HTTPStatus
    body: str = ""


Route = Callable[[str], Awaitable[Reply]]  # the raw query string -> the reply


class HttpListener:
    """Serves GET `path` with `route`; aiohttp answers every other request (404, 405, 400) itself."""

    def __init__(
        self,
        path: str,
        route: Route,
        head_timeout: float = HEAD_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """Serve `route` at `path` once started; a connection has `head_timeout` s to send its request, and
        at most `max_connections` are open at once; a refused request is logged at most once per status
        in REFUSED_EVERY_SECONDS."""
        self._path = path
        self._refused: LogQuota[int] = LogQuota(REFUSED_EVERY_SECONDS)  # by status
        self._route = route
        self._head_timeout = head_timeout
        self._max_connections = max_connections
        self._runner: web.AppRunner | None = None
        self._listening: asyncio.Server | None = None
        self.port = 0

    async def start(self, address: str, *, reuse_port: bool = False) -> None:
        """Listen on `address` (`host:port`, port 0 picks a free one). ConfigurationError if it cannot.

        `reuse_port` (SO_REUSEPORT) lets the workers of one `sesame serve` share the port it claimed.
        """
        app = web.Application(client_max_size=0)
        app.router.add_get(self._path, self._serve, allow_head=False)
        self._runner = web.AppRunner(
            app,
            access_log=None,  # its lines hold the query, and so the token
            handle_signals=False,
            keepalive_timeout=self._head_timeout,
            max_line_size=HEAD_LIMIT,
            max_field_size=HEAD_LIMIT,
            max_headers=HEAD_FIELDS,
            logger=_server_log,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # set up
        host, _, port = address.rpartition(":")
        try:
            # Our own listening socket (not aiohttp's TCPSite): its protocol factory bounds the connections.
            self._listening = await asyncio.get_running_loop().create_server(
                _Bounded(server, self._max_connections), host.strip("[]"), int(port), reuse_port=reuse_port
            )
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigurationError(f"cannot listen on {address}: {exc.strerror}") from exc
        self.port = self._listening.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and finish the connections in progress."""
        if self._listening is not None:
            self._listening.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._listening is not None:
            await self._listening.wait_closed()

    async def _serve(self, request: web.Request) -> web.Response:
        # Raw, as sent: the route parses it (yarl's `query_string` would be decoded already).
        reply = await self._route(request.rel_url.raw_query_string)
        if reply.status < HTTPStatus.BAD_REQUEST:
            _log.debug("%s from %s: %d", self._path, request.remote, reply.status)
        else:
            self._log_refused(reply.status, request.remote)
        response = web.Response(status=reply.status, text=reply.body + "\n")
        response.force_close()
        return response

    def _log_refused(self, status: int, remote: str | None) -> None:
        """One WARNING per status, then none for REFUSED_EVERY_SECONDS; the next counts those held back."""
        held_back = self._refused.admit(status)
        if held_back is not None:
            more = self._refused.held_back(held_back, "such requests")
            _log.warning("%s from %s: %d%s", self._path, remote, status, more)

"""`HttpListener`: one GET route (Kannel's delivery reports) on aiohttp's web server.

aiohttp parses HTTP; we set its limits: a request line or header field of at most HEAD_LIMIT bytes and
few header fields, HEAD_TIMEOUT seconds for a connection to send its request (aiohttp closes a
connection still idle by then), no body read, one answer per connection. aiohttp's access log, which
prints the request line and so the token, is off; our log shows the path and status, never the query.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from aiohttp import web

from sesame.server.domain.errors import ConfigurationError

_log = logging.getLogger("sesame.http")


class _WithoutTheRequest(logging.Filter):
    """aiohttp logs a refused request with its parser's error, which quotes the request line (and so the
    token): keep the class of the error only, as a WARNING without traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        record.msg, record.args = "HTTP request refused: %s", (type(error).__name__ if error else "?",)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# Where aiohttp's connection handler logs (instead of `aiohttp.server`), redacted.
_server_log = logging.getLogger("sesame.http.server")
_server_log.addFilter(_WithoutTheRequest())

HEAD_LIMIT: Final = 8192  # bytes of the request line, and of each header field; Kannel's reports take ~300
HEAD_FIELDS: Final = 32  # header fields at most (Kannel sends 4)
HEAD_TIMEOUT: Final = 5.0  # seconds a connection has to send its request


@dataclass(frozen=True, slots=True)
class Reply:
    """What the route answers: a status and a short text body."""

    status: HTTPStatus
    body: str = ""


Route = Callable[[str], Awaitable[Reply]]  # the raw query string -> the reply


class HttpListener:
    """Serves GET `path` with `route`; aiohttp answers every other request (404, 405, 400) itself."""

    def __init__(self, path: str, route: Route, head_timeout: float = HEAD_TIMEOUT) -> None:
        """Serve `route` at `path` once started; a connection has `head_timeout` s to send its request."""
        self._path = path
        self._route = route
        self._head_timeout = head_timeout
        self._runner: web.AppRunner | None = None
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
        host, _, port = address.rpartition(":")
        site = web.TCPSite(self._runner, host.strip("[]"), int(port), reuse_port=reuse_port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigurationError(f"cannot listen on {address}: {exc.strerror}") from exc
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """Stop listening and finish the connections in progress."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        # Raw, as sent: the route parses it (yarl's `query_string` would be decoded already).
        reply = await self._route(request.rel_url.raw_query_string)
        _log.log(
            logging.DEBUG if reply.status < HTTPStatus.BAD_REQUEST else logging.WARNING,
            "%s from %s: %d",
            self._path,
            request.remote,
            reply.status,
        )
        response = web.Response(status=reply.status, text=reply.body + "\n")
        response.force_close()
        return response

"""`HttpListener`: a minimal HTTP/1.1 server on asyncio for one GET route (Kannel's delivery reports).

No web framework is installed, and this route needs none: Kannel sends one GET per report and reads the
status code. Requests are bounded (head size, time to send it), each answer closes the connection, and a
request body is never read. Logs show the path and status, never the query (it holds a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from sesame.server.domain.errors import ConfigurationError

_log = logging.getLogger("sesame.http")

HEAD_LIMIT: Final = 8192  # bytes of request line and headers; Kannel's reports take about 300
HEAD_TIMEOUT: Final = 5.0  # seconds a client has to send its request line and headers


@dataclass(frozen=True, slots=True)
class Reply:
    """What the route answers: a status and a short text body."""

    status: HTTPStatus
    body: str = ""


Route = Callable[[str], Awaitable[Reply]]  # the raw query string -> the reply


class HttpListener:
    """Serves GET `path` with `route`; every other request gets its 4xx without reaching the route."""

    def __init__(self, path: str, route: Route) -> None:
        """Serve `route` at `path` once started."""
        self._path = path
        self._route = route
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, address: str, *, reuse_port: bool = False) -> None:
        """Listen on `address` (`host:port`, port 0 picks a free one). ConfigurationError if it cannot.

        `reuse_port` (SO_REUSEPORT) lets the workers of one `sesame serve` share the port it claimed.
        """
        host, _, port = address.rpartition(":")
        try:
            self._server = await asyncio.start_server(
                self.serve, host, int(port), limit=HEAD_LIMIT, reuse_port=reuse_port
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {address}: {exc.strerror}") from exc
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and wait for the connections in progress."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request on the connection, then close it."""
        try:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                reply = Reply(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
            else:
                reply = await self._answer(head)
            _log.log(
                logging.DEBUG if reply.status < HTTPStatus.BAD_REQUEST else logging.WARNING,
                "%s from %s: %d",
                self._path,
                writer.get_extra_info("peername", ("?",))[0],
                reply.status,
            )
            writer.write(_encode(reply))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass  # the client was too slow or went away: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, head: bytes) -> Reply:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return Reply(HTTPStatus.BAD_REQUEST)
        method, target, _ = parts
        path, _, query = target.partition("?")
        if path != self._path:
            return Reply(HTTPStatus.NOT_FOUND, "no such path")
        if method != "GET":
            return Reply(HTTPStatus.METHOD_NOT_ALLOWED)
        return await self._route(query)


def _encode(reply: Reply) -> bytes:
    body = (reply.body + "\n").encode()
    head = (
        f"HTTP/1.1 {reply.status.value} {reply.status.phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body

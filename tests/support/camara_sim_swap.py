"""A local operator implementing the CAMARA SIM Swap API's contract (retrieve-date and check), for the tests.

It serves on 127.0.0.1, a free port, in a thread: `POST <base>/retrieve-date` and `POST <base>/check` with a
bearer token, as the published OpenAPI (camaraproject/SimSwap, `sim-swap.yaml`) describes them: 401 without
the token, 400 INVALID_ARGUMENT for a number that is not E.164 or a maxAge out of 1..2400, 404 NOT_FOUND for
an unknown number. The test sets each number's latest SIM change, a delay, or makes an operation missing.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BASE = "/sim-swap/v2"
TOKEN = "test-operator-token"  # noqa: S105 (the local operator's, for tests)
MAX_AGE_HOURS = 2400
_E164 = re.compile(r"^\+[1-9][0-9]{4,14}$")


@dataclass
class Operator:
    """What the operator knows and how it behaves; the tests change it between calls."""

    changes: dict[str, datetime | None] = field(default_factory=dict)  # number -> latest SIM change
    delay: float = 0.0  # seconds before each answer
    offers_retrieve_date: bool = True
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""


def _handler(operator: Operator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            operation = self.path.removeprefix(BASE + "/")
            operator.calls.append((operation, body))
            time.sleep(operator.delay)
            refused = _refusal(operator, operation, self.headers.get("Authorization"), body)
            status, answer = refused or _result(operator, operation, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _refusal(
    operator: Operator, operation: str, authorization: str | None, body: dict[str, Any]
) -> tuple[int, dict[str, Any]] | None:
    """The error the API answers before looking at the number's SIM, if any."""
    if authorization != f"Bearer {TOKEN}":
        return 401, _error(401, "UNAUTHENTICATED", "no valid token")
    if operation == "retrieve-date" and not operator.offers_retrieve_date:
        return 501, _error(501, "NOT_IMPLEMENTED", "not offered")
    if operation not in {"retrieve-date", "check"}:
        return 404, _error(404, "NOT_FOUND", "no such operation")
    phone = body.get("phoneNumber")
    if not isinstance(phone, str) or not _E164.match(phone):
        return 400, _error(400, "INVALID_ARGUMENT", "phoneNumber")
    if phone not in operator.changes:
        return 404, _error(404, "NOT_FOUND", "unknown phone number")
    return None


def _result(operator: Operator, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    latest = operator.changes[body["phoneNumber"]]
    if operation == "retrieve-date":
        return 200, {"latestSimChange": None if latest is None else latest.isoformat()}
    max_age = body.get("maxAge", 240)
    if not isinstance(max_age, int) or not 1 <= max_age <= MAX_AGE_HOURS:
        return 400, _error(400, "OUT_OF_RANGE", "maxAge")
    return 200, {"swapped": latest is not None and (time.time() - latest.timestamp()) < max_age * 3600}


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"status": status, "code": code, "message": message}


@contextmanager
def camara_operator() -> Iterator[Operator]:
    """A running operator on 127.0.0.1 and a free port; `operator.url` is the API's base."""
    operator = Operator()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(operator))
    server.daemon_threads = True
    operator.url = f"http://127.0.0.1:{server.server_address[1]}{BASE}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield operator
    finally:
        server.shutdown()
        server.server_close()

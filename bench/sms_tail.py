"""Follows the console SMS file: each challenge's code, and when its SMS was handed to the gateway.

The console gateway writes one JSON line per SMS with `sent_at`, the server's wall-clock time of the
hand-over; the client and the server share the machine's clock, so `sent_at` minus the time StartChallenge
returned is the delay the issue's target speaks of. When a line has no `sent_at`, the time the tail first
read it stands in (polling every 2 ms, so a little later than the write).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sesame.server.grpc.demo import code_in


@dataclass(frozen=True, slots=True)
class Sms:
    """What the client learns of one challenge's SMS: its code and two wall-clock instants."""

    code: str
    sent_at: float | None
    seen_at: float


class SmsTail:
    """One polling task reads new complete lines; callers wait for the SMS of a challenge, bounded."""

    def __init__(self, path: Path, numbers: frozenset[str] | None = None) -> None:
        """Follow `path` (which the server created at boot) from its current end: earlier lines are older.
        `numbers`: keep only the SMS sent to these (a client process's own users; None: every SMS)."""
        self._numbers = numbers
        # One handle kept open: a poll is then one read(2), not an open, a seek and a close.
        self._handle = path.open("rb")
        self._handle.seek(0, 2)
        self._pending = b""
        self._messages: dict[str, Sms] = {}
        self._waiters: dict[str, asyncio.Future[Sms]] = {}

    def _poll(self) -> None:
        chunk = self._pending + self._handle.read()
        cut = chunk.rfind(b"\n") + 1
        complete, self._pending = chunk[:cut], chunk[cut:]
        seen = time.time()
        for line in complete.splitlines():
            if self._numbers is not None and _addressee(line) not in self._numbers:
                continue  # another client process's user: it reads that line itself
            message = json.loads(line)
            stamp = message.get("sent_at")
            sms = Sms(
                code=code_in(message["text"]),
                sent_at=datetime.fromisoformat(stamp).timestamp() if stamp else None,
                seen_at=seen,
            )
            self._messages[message["challenge_id"]] = sms
            waiter = self._waiters.pop(message["challenge_id"], None)
            if waiter is not None and not waiter.done():
                waiter.set_result(sms)

    async def follow(self, stop: asyncio.Event) -> None:
        """Read new lines every 2 ms until `stop` is set."""
        try:
            while not stop.is_set():
                self._poll()
                await asyncio.sleep(0.002)
            self._poll()
        finally:
            self._handle.close()

    async def sms(self, challenge_id: str, limit: float = 10.0) -> Sms:
        """The SMS of `challenge_id`, waiting for its line at most `limit` seconds (TimeoutError)."""
        if challenge_id in self._messages:
            return self._messages[challenge_id]
        waiter = self._waiters[challenge_id] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(waiter, limit)
        finally:
            self._waiters.pop(challenge_id, None)

    def forget(self, challenge_id: str) -> None:
        """Drop what is kept of a challenge that was verified (the tail's memory stays bounded)."""
        self._messages.pop(challenge_id, None)


_TO = b'{"to": "'  # how the console gateway's lines begin (json.dumps of a dict whose first key is "to")


def _addressee(line: bytes) -> str:
    """The number a console line is addressed to, read without parsing the whole line when it begins as
    the console gateway writes it (each client process skips the others' lines at the cost of a slice)."""
    if line.startswith(_TO):
        end = line.find(b'"', len(_TO))
        if end > 0:
            return line[len(_TO) : end].decode()
    to: str = json.loads(line)["to"]
    return to

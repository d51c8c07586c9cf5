"""Shedding calls beyond a bound per worker instead of queueing them (decision 0021).

grpc.aio takes every call that arrives and runs it: past what a worker can answer, calls only wait longer,
each holding memory, until every caller's deadline is spent. Beyond `limit` calls in flight, a new call
is refused at once with Overloaded (UNAVAILABLE with RetryInfo, from the error table): nothing was done,
so a retry is safe, and a caller's retry may land on a worker with room. Health checks are never shed: a
busy worker is not a broken one, and a balancer must not take it out for being busy.

grpc's own `maximum_concurrent_rpcs` is not used (checked on grpcio 1.85): it answers RESOURCE_EXHAUSTED
"Concurrent RPC limit exceeded!" without details, where callers read RESOURCE_EXHAUSTED as a spent send
budget; it refuses health checks too; and the behaviour our metering wraps never runs, so nothing counts it.
"""

from __future__ import annotations

from types import TracebackType

from sesame.server.domain.errors import Overloaded


class InFlight:
    """The calls in flight in this worker (one event loop: no lock), shed beyond `limit`.

    `admit()` sheds a new call beyond the bound (Overloaded); `with in_flight:` holds a place.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._count = 0

    def admit(self) -> None:
        """Return when a call may run now; else Overloaded (counted where every shed call is: calls.py)."""
        if self._count >= self._limit:
            raise Overloaded

    def __enter__(self) -> None:
        self._count += 1

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._count -= 1

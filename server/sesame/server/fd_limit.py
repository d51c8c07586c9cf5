"""How many connections a worker can keep open: the bound asked for, within its file descriptors.

Every connection holds a descriptor, and so do the worker's Redis connections (one per call in flight), its
HSM session's files and its logs. A connection bound above what the descriptor limit leaves would let
connections take the descriptors the HSM and Redis need (decision 0055), so the worker first raises its
soft limit to the hard one (as many runtimes do: the soft default of 1,024 is a relic of select()), then
lowers the bound if the limit still does not leave room for it, and says so.
"""

from __future__ import annotations

import logging
import resource
from typing import Final

_log = logging.getLogger("sesame")

# Descriptors kept for everything but connections and the Redis connections of calls in flight: the HSM
# session's token files, the outbox's and sealer's Redis connections, the metrics listener, logs.
RESERVED: Final = 256


def connection_bound(wanted: int, calls_in_flight: int) -> int:
    """`wanted`, or less when this process's descriptor limit (raised to its hard limit first) cannot hold
    that many connections beside `calls_in_flight` Redis connections and RESERVED others; at least 1."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # kept as it is: the bound below follows the soft limit
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(1, soft - calls_in_flight - RESERVED)
    if room < wanted:
        _log.warning(
            "at most %d connections per worker, not %d: the descriptor limit is %d (raise it, ulimit -n)",
            room,
            wanted,
            soft,
        )
        return room
    return wanted

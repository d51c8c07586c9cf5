"""The ports one `sesame serve` holds for its workers, and nobody else may share (decision 0021).

The workers bind the gRPC port with SO_REUSEPORT, on purpose, so that the kernel spreads connections over
them. SO_REUSEPORT lets any process of the same user join the group: a second, unrelated `sesame serve` on
the same port would then bind without error and take part of the calls. Two guards keep the port ours:

- before any worker starts, the supervisor checks with a socket of its own, bound as gRPC binds but
  without SO_REUSEPORT, that nobody listens there (a server already running is refused in one line);
- and it holds, for as long as it lives, a lock on the port: an abstract Unix socket named after it. The
  kernel keeps that name per network namespace, the scope of the port itself, and drops it however the
  holder dies: no file, no stale lock. Two `sesame serve` starting together cannot both pass the check.

Only the supervisor takes the lock; its workers bind the port it claimed. A process that sets SO_REUSEPORT
itself, under our user, and ignores the lock could still join: the lock guards against Sésame, not
against the user that runs it.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self

from sesame.server.domain.errors import ConfigurationError

_LOCK_PREFIX: Final = "sesame-serve-port-"


@dataclass(slots=True)
class PortClaim:
    """The addresses claimed (a port 0 replaced by the free port picked) and the locks held on them."""

    addresses: dict[str, str] = field(default_factory=dict)  # as asked -> as claimed
    _locks: list[socket.socket] = field(default_factory=list)

    def claim(self, address: str, setting: str) -> str:
        """Check that nobody listens on `address` and lock its port; the address to bind (port 0 picked).

        ConfigurationError naming the address and `setting` (the variable that gave it) when it is taken, or
        claimed by another `sesame serve`.
        """
        host, _, port = address.rpartition(":")
        if port == "0":
            port = str(_free_port(host, setting))
        claimed = f"{host}:{port}"
        ensure_free(claimed, setting)
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lock.bind(f"\0{_LOCK_PREFIX}{port}")
        except OSError as exc:
            lock.close()
            if exc.errno != errno.EADDRINUSE:
                raise ConfigurationError(f"cannot lock port {port} ({setting}): {exc.strerror}") from None
            raise ConfigurationError(
                f"cannot listen on {claimed} ({setting}): address already in use "
                f"(another sesame serve holds port {port})"
            ) from None
        self._locks.append(lock)
        self.addresses[address] = claimed
        return claimed

    def release(self) -> None:
        """Drop every lock (the workers have stopped). Idempotent."""
        locks, self._locks = self._locks, []
        for lock in locks:
            lock.close()

    def __enter__(self) -> Self:
        """`with PortClaim() as claim:` releases the locks on the way out."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Release."""
        self.release()


def ensure_free(address: str, setting: str) -> None:
    """ConfigurationError naming `address` and `setting` when another process listens there (a clear line,
    not gRPC's).

    Checked with a socket of our own, as gRPC binds (SO_REUSEADDR) but without SO_REUSEPORT: a socket in
    a SO_REUSEPORT group, a worker of another `sesame serve`, refuses it too.
    """
    host, _, port = address.rpartition(":")
    if port == "0":
        return
    try:
        candidates = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return  # gRPC reports an address it cannot resolve itself
    for family, kind, proto, _, where in candidates:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigurationError(
                        f"cannot listen on {address} ({setting}): address already in use"
                    ) from None


def _free_port(host: str, setting: str) -> int:
    """A port nobody listens on now on `host`, for an address that asks for any (port 0)."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host.strip("[]") or None, 0, type=socket.SOCK_STREAM
        )[0]
    except (OSError, UnicodeError):
        raise ConfigurationError(f"cannot listen on {host}:0 ({setting}): unknown host") from None
    with contextlib.closing(socket.socket(family, kind, proto)) as probe:
        probe.bind(where)
        port: int = probe.getsockname()[1]
        return port

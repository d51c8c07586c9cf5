"""The ports one `sesame serve` holds for its workers, and nobody else may share (decision 0021).

The workers bind the gRPC port with SO_REUSEPORT, on purpose, so that the kernel spreads connections over
them. SO_REUSEPORT lets any process of the same user join the group: a second, unrelated `sesame serve` on
the same port would then bind without error and take part of the calls. Two guards keep the port ours:

- before any worker starts, the supervisor checks with a socket of its own, bound as gRPC binds but
  without SO_REUSEPORT, that nobody listens there (a server already running is refused in one line);
- and it holds, for as long as it lives, a lock on the port: an abstract Unix socket named after it. The
  kernel keeps that name per network namespace, the scope of the port itself, and drops it however the
  holder dies: no file, no stale lock. Two `sesame serve` starting together cannot both pass the check.

It also keeps the port bound, as a member of the workers' SO_REUSEPORT group that never listens (so the
kernel hands it no connection): a listener that asks for any port (port 0), the supervisor's /metrics or
another process's, is then never given a port claimed for the workers but not yet bound by them. A port 0
of ours is picked by that bind itself.

Only the supervisor takes the lock; its workers bind the port it claimed. A process that sets SO_REUSEPORT
itself, under our user, and ignores the lock could still join: the lock guards against Sésame, not
against the user that runs it.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self

from sesame.server.domain.errors import ConfigurationError

_LOCK_PREFIX: Final = "sesame-serve-port-"


@dataclass(slots=True)
class PortClaim:
    """The addresses claimed (a port 0 replaced by the port picked), and the sockets that hold them: each
    port bound and locked."""

    addresses: dict[str, str] = field(default_factory=dict)  # as asked -> as claimed
    _held: list[socket.socket] = field(default_factory=list)

    def claim(self, address: str, setting: str) -> str:
        """Check that nobody listens on `address`; bind and lock its port. The address to bind, port 0 picked.

        ConfigurationError naming the address and `setting` (the variable that gave it) when it is taken, or
        claimed by another `sesame serve`.
        """
        host, _, port = address.rpartition(":")
        if port != "0":
            ensure_free(address, setting)
        held = _hold(host, int(port), setting)
        if held:
            port = str(held[0].getsockname()[1])
        claimed = f"{host}:{port}"
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        held.append(lock)
        try:
            lock.bind(f"\0{_LOCK_PREFIX}{port}")
        except OSError as exc:
            for sock in held:
                sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise ConfigurationError(f"cannot lock port {port} ({setting}): {exc.strerror}") from None
            raise ConfigurationError(
                f"cannot listen on {claimed} ({setting}): address already in use "
                f"(another sesame serve holds port {port})"
            ) from None
        self._held.extend(held)
        self.addresses[address] = claimed
        return claimed

    def release(self) -> None:
        """Let every port go (the workers have stopped). Idempotent."""
        held, self._held = self._held, []
        for sock in held:
            sock.close()

    def __enter__(self) -> Self:
        """`with PortClaim() as claim:` releases the ports on the way out."""
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


def _hold(host: str, port: int, setting: str) -> list[socket.socket]:
    """Sockets bound, never listening, on every address `host` resolves to, with the options the workers
    bind with (SO_REUSEADDR, SO_REUSEPORT); port 0: the first bind picks the port the others take.

    None held for a host that does not resolve, which gRPC reports itself when the workers bind;
    ConfigurationError for a host:0 that does not (no port to pick) or an address that cannot be bound.
    """
    try:
        candidates = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError):
        if port == 0:
            raise ConfigurationError(f"cannot listen on {host}:0 ({setting}): unknown host") from None
        return []
    held: list[socket.socket] = []
    try:
        for family, kind, proto, _, where in candidates:
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((where[0], port, *where[2:]))
            port = sock.getsockname()[1]
    except OSError as exc:
        for sock in held:
            sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigurationError(f"cannot listen on {host}:{port} ({setting}): {reason}") from None
    return held

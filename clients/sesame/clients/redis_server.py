"""`EmbeddedRedis`: a private `redis-server` child process, for `sesame serve` defaults and for tests.

It listens on 127.0.0.1 only, keeps its data in one directory and persists every write through the
append-only file (`appendonly yes`, RDB snapshots off), so a restart on the same directory finds the
registry and the journal again. If the child dies, `restart_if_dead()` starts it
again on the same port and directory, so a client holding `url` reconnects to it by itself.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from sesame.server.domain.errors import ConfigurationError, StoreUnavailable

FsyncPolicy = Literal["always", "everysec", "no"]
_HOST = "127.0.0.1"

_log = logging.getLogger("sesame.clients")


class EmbeddedRedis:
    """One redis-server child bound to loopback, with its data, log and pid file in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendfsync: FsyncPolicy = "everysec",
        executable: str = "redis-server",
        startup_timeout: float = 10.0,
    ) -> None:
        """Describe the server; nothing starts before `start()` (or `with`)."""
        self.data_dir = data_dir
        self._requested_port = port
        self._port: int | None = None
        self._appendfsync = appendfsync
        self._executable = executable
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        # A supervisor thread may restart the child while the owner stops it: one transition at a time.
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The TCP port of the server, from `start()` to `stop()` (kept while a dead child awaits restart)."""
        if self._port is None:
            raise StoreUnavailable("embedded redis-server is not running")
        return self._port

    @property
    def is_running(self) -> bool:
        """Whether the child is alive: False before `start()`, after `stop()` and once it has died."""
        process = self._process
        return process is not None and process.poll() is None

    @property
    def pid_file(self) -> Path:
        """Where redis-server writes its process id (also the guard against two servers on one dir)."""
        return self.data_dir / "redis.pid"

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0` of the running server."""
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def log_file(self) -> Path:
        """Where redis-server writes its log."""
        return self.data_dir / "redis.log"

    def start(self) -> None:
        """Start the child and wait until it answers PING (loading the append-only file first)."""
        with self._lock:
            if self._process is not None:
                return
            executable = self._executable_path()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            _refuse_if_in_use(self.pid_file)
            # A port picked here may be taken before the child binds it: pick again, a few times.
            tries = 1 if self._requested_port else 3
            for remaining in reversed(range(tries)):
                try:
                    self._launch(executable, self._requested_port or _free_port())
                except StoreUnavailable:
                    self._forget()
                    if remaining == 0:
                        raise
                else:
                    return

    def restart_if_dead(self) -> bool:
        """Start a child that died again, on the same port and directory; True if it did so.

        False when the child is alive, or when there is nothing to supervise (never started, or
        stopped). StoreUnavailable when the new child does not come up: the port is kept, because the
        clients' URL names it, and the next call tries again.
        """
        with self._lock:
            process, port = self._process, self._port
            if process is None or port is None or process.poll() is None:
                return False
            _log.warning(
                "embedded redis-server (pid %d) exited with status %s; restarting it on port %d",
                process.pid,
                process.returncode,
                port,
            )
            executable = self._executable_path()
            # The pid file still names the dead child; this only refuses if another live server took the
            # directory meanwhile (two servers on one append-only file would corrupt it).
            _refuse_if_in_use(self.pid_file)
            self._launch(executable, port)
            return True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes the append-only file and exits), then SIGKILL if it does not."""
        with self._lock:
            process = self._process
            if process is None:
                return
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    _kill(process)
            self._forget()

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed beyond what the fsync policy already wrote.

        The server is then stopped for good (`restart_if_dead` leaves it alone); to simulate a crash
        that a supervisor should repair, kill the pid in `pid_file` instead.
        """
        with self._lock:
            process = self._process
            if process is None:
                return
            _kill(process)
            self._forget()

    def __enter__(self) -> Self:
        """Start, for `with EmbeddedRedis(path) as server:`."""
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop."""
        self.stop()

    def _executable_path(self) -> str:
        executable = shutil.which(self._executable)
        if executable is None:
            raise ConfigurationError(
                f"{self._executable} not found on PATH: install redis-server (make system-deps)"
            )
        return executable

    def _launch(self, executable: str, port: int) -> None:
        """Spawn a child on `port` and wait for it; on failure no child of ours is left running."""
        self._wait_until_ready(self._spawn(executable, port))

    def _spawn(self, executable: str, port: int) -> subprocess.Popen[bytes]:
        try:
            stderr = (self.data_dir / "redis.stderr").open("wb")
        except OSError as exc:
            raise StoreUnavailable(f"cannot write in {self.data_dir}: {exc.strerror}") from exc
        try:
            process = subprocess.Popen(  # noqa: S603 (fixed argument list, no shell)
                [executable, *self._arguments(port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                # Its own session: a Ctrl-C in the terminal reaches Sésame, which drains and then stops
                # Redis itself, instead of Redis dying under calls still in flight.
                start_new_session=True,
            )
        except OSError as exc:
            raise StoreUnavailable(f"cannot run {executable}: {exc}") from exc
        finally:
            stderr.close()
        self._process, self._port = process, port
        return process

    def _arguments(self, port: int) -> list[str]:
        data_dir = str(self.data_dir.resolve())
        return [
            "--bind", _HOST,
            "--port", str(port),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", data_dir,
            "--appendonly", "yes",
            "--appendfsync", self._appendfsync,
            "--save", "",
            "--logfile", str(self.log_file.resolve()),
            "--pidfile", str(self.pid_file.resolve()),
            # The data directory in the process title, so operators (and pgrep -f) see whose it is.
            "--proc-title-template", f"{{title}} {{listen-addr}} {data_dir}",
        ]  # fmt: skip

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StoreUnavailable(f"redis-server exited at start-up: {self._diagnostics()}")
            if _answers_ping(self.port):
                return
            time.sleep(0.02)
        detail = self._diagnostics()
        _kill(process)
        raise StoreUnavailable(f"redis-server did not answer PING within {self._startup_timeout} s: {detail}")

    def _diagnostics(self) -> str:
        lines: list[str] = []
        for path in (self.data_dir / "redis.stderr", self.log_file):
            with contextlib.suppress(OSError):
                lines += path.read_text(errors="replace").splitlines()[-5:]
        return " | ".join(line.strip() for line in lines if line.strip()) or "no output"

    def _forget(self) -> None:
        self._process = None
        self._port = None
        with contextlib.suppress(OSError):
            self.pid_file.unlink()


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    """Whether the server is up and done loading (a loading server answers -LOADING)."""
    try:
        with socket.create_connection((_HOST, port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _refuse_if_in_use(pid_file: Path) -> None:
    """Two servers on one append-only file would corrupt it: refuse when a live one owns the dir."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    # The child's process title names its data directory (see `_arguments`).
    if str(pid_file.parent.resolve()).encode() in cmdline:
        raise StoreUnavailable(f"another redis-server (pid {pid}) already uses {pid_file.parent}")

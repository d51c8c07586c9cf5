"""`EmbeddedRedis`: a private `redis-server` child process, for `sesame serve` defaults and for tests.

It listens on 127.0.0.1 only, keeps its data in one directory and persists every write through the
append-only file (`appendonly yes`, RDB snapshots off), so a restart on the same directory finds the
registry and the journal again (DESIGN.md section 6).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from sesame.server.domain.errors import ConfigurationError, StoreUnavailable

FsyncPolicy = Literal["always", "everysec", "no"]
_HOST = "127.0.0.1"


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

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        if self._port is None:
            raise StoreUnavailable("embedded redis-server is not running")
        return self._port

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
        if self._process is not None:
            return
        executable = shutil.which(self._executable)
        if executable is None:
            raise ConfigurationError(
                f"{self._executable} not found on PATH: install redis-server (make system-deps)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _refuse_if_in_use(self.data_dir / "redis.pid")
        # A port picked here may be taken before the child binds it: pick again, a few times.
        tries = 1 if self._requested_port else 3
        for remaining in reversed(range(tries)):
            try:
                self._spawn(executable, self._requested_port or _free_port())
                self._wait_until_ready()
            except StoreUnavailable:
                if remaining == 0:
                    raise
            else:
                return

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes the append-only file and exits), then SIGKILL if it does not."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed beyond what the fsync policy already wrote."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
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

    def _spawn(self, executable: str, port: int) -> None:
        stderr = (self.data_dir / "redis.stderr").open("wb")
        try:
            self._process = subprocess.Popen(  # noqa: S603 (fixed argument list, no shell)
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
        self._port = port

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
            "--pidfile", str((self.data_dir / "redis.pid").resolve()),
            # The data directory in the process title, so operators (and pgrep -f) see whose it is.
            "--proc-title-template", f"{{title}} {{listen-addr}} {data_dir}",
        ]  # fmt: skip

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                detail = self._diagnostics()
                self._forget()
                raise StoreUnavailable(f"redis-server exited at start-up: {detail}")
            if _answers_ping(self.port):
                return
            time.sleep(0.02)
        detail = self._diagnostics()
        self.kill()
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
            (self.data_dir / "redis.pid").unlink()


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

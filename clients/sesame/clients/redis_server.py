"""`EmbeddedRedis`: a private `redis-server` child process, for `sesame serve` defaults and for tests.

It listens on 127.0.0.1 only, keeps its data in one directory and persists every write through the
append-only file (`appendonly yes`, RDB snapshots off), so a restart on the same directory finds the
registry and the journal again. If the child dies, `restart_if_dead()` starts it
again on the same port and directory, so a client holding `url` reconnects to it by itself.

The child dies with us: it is asked SIGTERM by the kernel when its parent goes (PR_SET_PDEATHSIG), so a
SIGKILLed `sesame serve` leaves no Redis behind holding the directory. The owner of a directory holds an
exclusive lock on `owner.lock` in it for as long as it lives (the kernel drops it however it dies): a second
owner is refused, and a redis-server found on a directory nobody owns is an orphan (left by a version
without the death signal, or started by hand) and is stopped before ours starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

from sesame.server.domain.errors import ConfigurationError, StoreUnavailable

FsyncPolicy = Literal["always", "everysec", "no"]
_HOST = "127.0.0.1"
# <linux/prctl.h>: the signal the kernel sends a process when its parent (the thread that forked it) dies.
_PR_SET_PDEATHSIG: Final = 1
_OWNER_LOCK: Final = "owner.lock"

_log = logging.getLogger("sesame.clients")


class EmbeddedRedis:
    """One redis-server child bound to loopback, with its data, log and pid file in `data_dir`."""

    def __init__(  # noqa: PLR0913 (after the directory, keyword-only, with defaults)
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendfsync: FsyncPolicy = "everysec",
        executable: str = "redis-server",
        startup_timeout: float = 10.0,
        extra_arguments: Sequence[str] = (),
        pick_port: Callable[[], int] | None = None,
    ) -> None:
        """Describe the server; nothing starts before `start()` (or `with`). `extra_arguments` go to
        redis-server after ours (the tests' cluster nodes add `--cluster-enabled yes`). Without `port`, the
        child gets one from `pick_port` (a free loopback port by default; the tests' cluster nodes want their
        bus port free too), and another if it was taken before the child bound it."""
        self.data_dir = data_dir
        self._requested_port = port
        self._pick_port = pick_port or _free_port
        self._port: int | None = None
        self._appendfsync = appendfsync
        self._executable = executable
        self._startup_timeout = startup_timeout
        self._extra_arguments = tuple(extra_arguments)
        self._process: subprocess.Popen[bytes] | None = None
        self._owner_lock: int | None = None
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
            self._own_directory()
            try:
                # We own the directory now: a redis-server still on it has no owner left.
                _stop_orphan(self.pid_file, self._startup_timeout)
                self._launch_on_a_free_port(executable)
            except BaseException:
                self._disown_directory()
                raise

    def _launch_on_a_free_port(self, executable: str) -> None:
        # A port picked here may be taken before the child binds it: pick again, a few times.
        tries = 1 if self._requested_port else 3
        for remaining in reversed(range(tries)):
            try:
                self._launch(executable, self._requested_port or self._pick_port())
            except StoreUnavailable:
                self._forget()
                if remaining == 0:
                    raise
            else:
                return

    def _own_directory(self) -> None:
        """Create the data directory (0700: it holds the registry) and take its owner lock, or refuse."""
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # An existing directory keeps its mode through mkdir: tighten it too.
            self.data_dir.chmod(0o700)
            fd = os.open(self.data_dir / _OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write in {self.data_dir}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreUnavailable(
                f"another process already runs a redis-server on {self.data_dir}"
            ) from None
        self._owner_lock = fd

    def _disown_directory(self) -> None:
        fd, self._owner_lock = self._owner_lock, None
        if fd is not None:
            os.close(fd)

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
            self._disown_directory()

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
            self._disown_directory()

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
                preexec_fn=_die_with(os.getpid()),  # noqa: PLW1509 (a prctl and a getppid, no lock of ours)
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
            # A challenge hash holds the operation's canonical bytes (89 for a transfer, more with a long
            # payee name): with Redis's default of 64 one such value turns the whole hash into a
            # hashtable, twice the memory (1.9 KB against 0.9 KB). docs/operations.md asks the same of a
            # production Redis.
            "--hash-max-listpack-value", "256",
            "--logfile", str(self.log_file.resolve()),
            "--pidfile", str(self.pid_file.resolve()),
            # The data directory in the process title, so operators (and pgrep -f) see whose it is.
            "--proc-title-template", f"{{title}} {{listen-addr}} {data_dir}",
            *self._extra_arguments,
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


def _die_with(parent: int) -> Callable[[], None]:
    """What the child runs before exec: ask SIGTERM (Redis flushes its append-only file) when we die.

    The kernel ties the signal to the forking thread, not the process: `asyncio.to_thread` workers live as
    long as the event loop, which stops the child first anyway.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # Died between fork and prctl: no signal will come, so do not start an orphan.
        if os.getppid() != parent:
            os._exit(1)

    return arm


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


def _live_server(pid_file: Path) -> int | None:
    """The pid of the live redis-server whose pid file this is and whose title names its directory."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _runs_on(pid, pid_file.parent) else None


def _runs_on(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is alive and its process title (see `_arguments`) names `data_dir`.

    The title guards against a recycled pid: another process that got the number is never signalled.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie's cmdline is empty: it is gone for our purpose.
    return str(data_dir.resolve()).encode() in cmdline


def _refuse_if_in_use(pid_file: Path) -> None:
    """Two servers on one append-only file would corrupt it: refuse when a live one owns the dir."""
    pid = _live_server(pid_file)
    if pid is not None:
        raise StoreUnavailable(f"another redis-server (pid {pid}) already uses {pid_file.parent}")


def _stop_orphan(pid_file: Path, timeout: float) -> None:
    """Stop a redis-server left on the directory by an owner that died: SIGTERM, SIGKILL past `timeout`."""
    pid = _live_server(pid_file)
    if pid is None:
        return
    _log.warning("stopping redis-server pid %d, left on %s by a previous run", pid, pid_file.parent)
    data_dir = pid_file.parent
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _runs_on(pid, data_dir):
                return
            time.sleep(0.02)
    raise StoreUnavailable(f"redis-server pid {pid} on {data_dir} did not stop")


def url_of_running(data_dir: Path) -> str:
    """The URL of the live redis-server that another process (a `sesame serve`) runs on `data_dir`, read
    from its process title (`{listen-addr}`, see `_arguments`): how a command reaches the embedded Redis
    of a running server. StoreUnavailable when none runs there."""
    pid = _live_server(data_dir / "redis.pid")
    if pid is not None:
        with contextlib.suppress(OSError):
            found = re.search(rb"127\.0\.0\.1:(\d+)", Path(f"/proc/{pid}/cmdline").read_bytes())
            if found is not None:
                return f"redis://{_HOST}:{int(found.group(1))}/0"
    raise StoreUnavailable(f"no redis-server runs on {data_dir}")

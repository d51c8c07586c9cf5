"""The worker processes of `sesame serve`: started, restarted when one dies, drained on SIGTERM.

A worker is `python -m sesame.server.worker`, a process of its own (exec'd, never forked: no state of the
supervisor, no gRPC or HSM library state, no lock of ours is inherited) with its own HSM session and Redis
pool, serving the ports the supervisor claimed. It says it is ready by writing to a pipe once its port
serves, then, once a second, that its event loop still turns: one silent for `hang_after` seconds (stopped,
or stuck in a call that never returns, while the kernel still hands it connections) is killed and started
again (decision 0138). It runs in its own session, so a Ctrl-C in the terminal reaches the supervisor only,
which drains the workers; and it is sent SIGTERM by the kernel when the supervisor dies (PR_SET_PDEATHSIG),
as the embedded redis-server is.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from sesame.server.domain.errors import ConfigurationError, SesameError

_log = logging.getLogger("sesame.workers")
# <linux/prctl.h>: the signal the kernel sends a process when its parent (the thread that forked it) dies.
_PR_SET_PDEATHSIG: Final = 1
READY: Final = b"ready\n"
# What a worker writes on the same pipe every BEAT_INTERVAL seconds once it serves (decision 0138).
BEAT: Final = b"."
BEAT_INTERVAL: Final = 1.0
# A worker silent this long does not count as serving any more (sesame_workers_serving), though it is replaced
# only after `hang_after`: a loop held a few seconds (a long collection) is late, not dead.
_QUIET: Final = 5 * BEAT_INTERVAL
# How often a start waiting for its worker's word looks whether the drain began (decision 0130).
_STOP_LOOK: Final = 0.1


class WorkerFailed(SesameError):
    """A worker did not come up: it exited, or did not say it serves within the time allowed."""


@dataclass(frozen=True, slots=True)
class WorkerLaunch:
    """How to start a worker: its environment (settings), the time it has to serve, what to do at its end."""

    env: Mapping[str, str]
    ready_timeout: float = 120.0
    hang_after: float = 30.0  # a serving worker silent this long is killed and started again (0138)
    on_exit: Callable[[int], None] = lambda _pid: None  # told each dead worker's pid (metrics files)


class WorkerProcess:
    """One worker slot: the process in it now, started again by `restart_if_dead` when it died."""

    def __init__(self, index: int, launch: WorkerLaunch, spawner: ThreadPoolExecutor) -> None:
        """Describe worker `index` (1, 2, ...; 0: the sealer process), forked by `spawner`'s thread; nothing
        starts before `start()`."""
        self.index = index
        self.name = f"worker {index}" if index else "the sealer"
        self._role = ["--index", str(index)] if index else ["--sealer"]
        self._launch = launch
        self._spawner = spawner
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False  # the process in the slot said it serves
        self._beats: int | None = None  # the read end of its pipe, while it serves
        self._heard_at = 0.0  # when its last beat was read (monotonic)
        self._beats_lock = threading.Lock()  # the metrics' thread reads the beats too
        self._stopping = False
        # Set by the drain before it takes the lock: a start under way (a restart holding the lock while its
        # worker boots) gives up at once instead of holding the drain for the whole ready timeout (0130).
        self._stop_asked = threading.Event()
        # The restart thread and the drain may meet: one transition at a time.
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker and wait until it serves. Blocking. WorkerFailed if it does not."""
        with self._lock:
            self._spawn()

    @property
    def serving(self) -> bool:
        """Whether the slot's process said it serves, still runs, and beat lately (read by the metrics'
        thread)."""
        process = self._process
        return self._ready and process is not None and process.poll() is None and self._silence() < _QUIET

    def restart_if_dead(self) -> bool:
        """Start the worker again if it died, or hangs: silent for `hang_after` seconds, it is killed first
        (not while draining); True if it did. Blocking.

        WorkerFailed when the new one does not come up: the supervisor tries again, backing off.
        """
        with self._lock:
            process = self._process
            if self._stop_asked.is_set() or process is None:
                return False
            if process.poll() is None:
                silence = self._silence()
                if silence < self._launch.hang_after:
                    return False
                # SIGKILL: a stopped process acts on no other signal; a stuck loop drains nothing.
                process.kill()
                process.wait()
                _log.warning(
                    "%s (pid %d) gave no sign of life for %.0f s: killed, starting it again",
                    self.name,
                    process.pid,
                    silence,
                )
            else:
                _log.warning(
                    "%s (pid %d) exited with status %s; starting it again",
                    self.name,
                    process.pid,
                    process.returncode,
                )
            self._launch.on_exit(process.pid)
            self._spawn()
            return True

    def stop_starting(self) -> None:
        """Stop waiting for the worker to serve (SIGTERM while it boots): its start kills it and fails."""
        self._stop_asked.set()

    def terminate(self) -> None:
        """Ask the worker to drain (SIGTERM, once: a second one would cut its drain short) and never
        restart it. A worker still starting is stopped (it serves nothing yet)."""
        self._stop_asked.set()
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            process = self._process
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def wait(self, deadline: float) -> int | None:
        """Wait for a terminated worker until `deadline` (monotonic), then SIGKILL it. Its exit status
        (None when there is no process, or it was waited for already)."""
        process, self._process = self._process, None
        self._deafen()
        if process is None:
            return None
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _log.warning("%s (pid %d) did not drain in time: killed", self.name, process.pid)
            process.kill()
            process.wait()
        self._launch.on_exit(process.pid)
        return process.returncode

    def _silence(self) -> float:
        """Seconds since the serving worker's last beat, the pipe read first (0.0 before it serves)."""
        with self._beats_lock:
            if self._beats is None:
                return 0.0
            try:
                # Whatever came since the last read; end of file (b""): it died, which poll() tells.
                if os.read(self._beats, 4096):
                    self._heard_at = time.monotonic()
            except BlockingIOError:
                pass
            return time.monotonic() - self._heard_at

    def _deafen(self) -> None:
        """Close the pipe of the worker that was in the slot."""
        with self._beats_lock:
            beats, self._beats = self._beats, None
        if beats is not None:
            os.close(beats)

    def _spawn(self) -> None:
        self._deafen()
        read_end, write_end = os.pipe()
        try:
            # Forked by the spawner's thread: the kernel sends the death signal when the forking thread
            # ends, and that one lives as long as the pool.
            process = self._spawner.submit(
                subprocess.Popen,
                [sys.executable, "-m", "sesame.server.worker", *self._role, "--ready-fd", str(write_end)],
                env=dict(self._launch.env),
                stdin=subprocess.DEVNULL,
                pass_fds=(write_end,),
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()),
            ).result()  # fmt: skip
        except OSError as exc:
            os.close(read_end)
            raise WorkerFailed(f"cannot start {self.name}: {exc}") from exc
        finally:
            os.close(write_end)
        self._ready = False
        self._process = process
        try:
            self._wait_ready(process, read_end)
        except BaseException:
            os.close(read_end)
            raise
        os.set_blocking(read_end, False)
        with self._beats_lock:
            self._beats, self._heard_at = read_end, time.monotonic()
        self._ready = True

    def _wait_ready(self, process: subprocess.Popen[bytes], read_end: int) -> None:
        """Return once the worker wrote READY; WorkerFailed when it exits first, takes too long, or the
        drain began meanwhile."""
        deadline = time.monotonic() + self._launch.ready_timeout
        readable: list[int] = []
        while not readable and not self._stop_asked.is_set() and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([read_end], [], [], min(left, _STOP_LOOK))
        # End of file (the worker died: its end of the pipe closed) reads as b"".
        if readable and os.read(read_end, len(READY)) == READY:
            _log.info("%s (pid %d) %s", self.name, process.pid, "serving" if self.index else "sealing")
            return
        if process.poll() is None:
            process.kill()
        status = process.wait()
        raise WorkerFailed(f"{self.name} did not start (exit status {status})")


def _die_with(parent: int) -> Callable[[], None]:
    """What the worker runs before exec: ask SIGTERM (it drains) when the supervisor dies.

    The kernel ties the signal to the forking thread, not the process: every worker is forked by the
    pool's spawner thread, which ends only after the drain.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The supervisor died between fork and prctl: no signal will come, so do not start an orphan.
        if os.getppid() != parent:
            os._exit(1)

    return arm


class WorkerPool:
    """`count` worker slots and the sealer's, started together; a slot that cannot start stops the boot."""

    def __init__(self, count: int, launch: WorkerLaunch) -> None:
        """Describe the pool; nothing starts before `start()`."""
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sesame-spawner")
        self.workers = [WorkerProcess(index, launch, self._spawner) for index in range(1, count + 1)]
        # The journal's sealer, off the calls' loops (decision 0085); drained last, after the calls.
        self.sealer = WorkerProcess(0, launch, self._spawner)
        self.processes = [*self.workers, self.sealer]

    def serving(self) -> int:
        """How many worker slots (the sealer's apart) have a process that serves now."""
        return sum(worker.serving for worker in self.workers)

    def start(self) -> None:
        """Start every worker, in parallel, and wait until all serve. Blocking.

        ConfigurationError when one does not come up (its own reason is on its standard error): the
        others are stopped, and the boot fails as a misconfigured one does.
        """
        failures: list[WorkerFailed] = []

        def start(worker: WorkerProcess) -> None:
            try:
                worker.start()
            except WorkerFailed as failed:
                failures.append(failed)

        threads = [threading.Thread(target=start, args=(worker,)) for worker in self.processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            self.drain(0.0)
            raise ConfigurationError(str(failures[0])) from None

    def stop_starting(self) -> None:
        """SIGTERM while the workers boot: `start` stops waiting for them and fails at once (it waited for a
        worker that never served for its whole start deadline, two minutes: an outside audit)."""
        for process in self.processes:
            process.stop_starting()

    def drain(self, grace: float) -> None:
        """SIGTERM every worker, wait for them to drain (`grace` and a few seconds to stop), SIGKILL the
        rest; then the sealer, which seals meanwhile what the drained calls journaled. Blocking."""
        for group in (self.workers, [self.sealer]):
            for process in group:
                process.terminate()
            deadline = time.monotonic() + grace + 5.0
            for process in group:
                with contextlib.suppress(ProcessLookupError):
                    status = process.wait(deadline)
                    if status not in (None, 0):
                        _log.warning("%s exited with status %s", process.name, status)
        self._spawner.shutdown()

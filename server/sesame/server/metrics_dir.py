"""The supervisor's multiprocess metrics directory, and the sweep of those dead supervisors left behind.

Each run of `sesame serve` sums its workers' files in a private directory under the temporary directory
(`TMPDIR`, as `tempfile` reads it), removed when the supervisor ends. A supervisor killed (SIGKILL, the OOM
killer, a power cut of a container that keeps /tmp) removes nothing: its directory stayed for good, one per
crash. So the directory holds `supervisor.lock`, flock'ed by the supervisor for its whole life; the kernel
drops that lock however the process ends. A booting supervisor removes each `sesame-metrics-*` directory of
its user whose lock it can take: its owner is gone. A directory without the lock file (another program's,
or one of a version before this one) or whose lock is held (another `sesame serve` on this host) is kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

_log = logging.getLogger("sesame")

PREFIX = "sesame-metrics-"
LOCK = "supervisor.lock"


class MetricsDirectory:
    """A fresh private directory whose `supervisor.lock` this process holds until `close`."""

    def __init__(self) -> None:
        sweep_dead(Path(tempfile.gettempdir()))
        self.path = tempfile.mkdtemp(prefix=PREFIX)
        # Locked under another name, then renamed: a sweep finds the lock file held from its first instant.
        building = Path(self.path) / f".{LOCK}"
        self._lock = os.open(building, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        building.rename(Path(self.path) / LOCK)

    def close(self) -> None:
        """Remove the directory, then let go of its lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)


def sweep_dead(parent: Path) -> list[Path]:
    """Remove the metrics directories under `parent` whose supervisor is gone; the ones removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        if _remove_if_dead(Path(entry.path)):
            removed.append(Path(entry.path))
    if removed:
        _log.info("removed %d metrics directories of dead supervisors under %s", len(removed), parent)
    return removed


def _remove_if_dead(directory: Path) -> bool:
    """Remove `directory` if it is ours (our user's, with its lock file) and its lock is free."""
    try:
        if directory.lstat().st_uid != os.getuid():
            return False
        lock = os.open(directory / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # gone meanwhile, no lock file, a symbolic link: not provably ours
        return False
    try:
        if not stat.S_ISREG(os.fstat(lock).st_mode):
            return False
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its supervisor runs
            return False
        # Removed while we hold the lock: a sweep racing this one waits for it, then finds nothing.
        shutil.rmtree(directory, ignore_errors=True)
        return not directory.exists()
    finally:
        with contextlib.suppress(OSError):
            os.close(lock)

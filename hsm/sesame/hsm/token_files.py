"""The files of SoftHSM's key objects, to tell when a token's keys changed on disk behind the module's back.

SoftHSM (file back end) indexes a token's directory at C_Initialize, then again only when the token's
`generation` file changes (`OSToken::index`). A restore from a copy, made while a process uses the token,
can leave that index stale for good: copied in directory order, the generation file may come first, and a
process that searches before the key objects follow reads the directory half restored and takes the new
generation as read; nor does anything re-read it when key files are put back without the generation file.
Such a process answers "no such key" for keys its token's directory holds, until its next C_Initialize.

`object_files` describes the key object files as they are now; `HsmWorker` compares it with what the
module read at its last C_Initialize, only when a key was not found (decision 0087).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

_log = logging.getLogger("sesame.hsm")

# Beside each token's token.object, its last complete copy: SoftHSM indexes only names ending in `.object`.
KEPT_COPY = "token.object.kept"
# How long an empty token.object is left to a live rewrite (SoftHSM writes it in microseconds once it holds
# the lock) before it is taken for one a killed process left.
EMPTY_GRACE_SECONDS = 0.2

# Where SoftHSM reads its configuration when SOFTHSM2_CONF is not set (Debian's build, as ours).
DEFAULT_SOFTHSM2_CONF = "/etc/softhsm/softhsm2.conf"

# One key object file: its path under the token directory, inode, size and change time. A restore makes a
# new file (a new inode, or at least a new change time: it cannot be set back), so it always differs.
ObjectFile = tuple[str, int, int, int]


def softhsm_token_dir(conf: str | None) -> Path | None:
    """SoftHSM's token directory named by the configuration file `conf` (its default when None), or None
    when the file cannot be read or names another back end than files (the database one has no index to
    go stale)."""
    try:
        text = Path(conf or DEFAULT_SOFTHSM2_CONF).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    settings = {}
    for line in text.splitlines():
        name, equals, value = line.partition("=")
        if equals and not name.lstrip().startswith("#"):
            settings[name.strip()] = value.strip()
    if settings.get("objectstore.backend", "file") != "file" or not settings.get("directories.tokendir"):
        return None
    return Path(settings["directories.tokendir"])


def object_files(token_dir: Path | None) -> frozenset[ObjectFile] | None:
    """Every key object file of every token under `token_dir` (`<uuid>.object`, not `token.object`, which
    SoftHSM rewrites at each login, nor the lock files); None when there is no such directory to read."""
    if token_dir is None:
        return None
    found = []
    try:
        with os.scandir(token_dir) as tokens:
            token_paths = [entry.path for entry in tokens if entry.is_dir(follow_symlinks=False)]
        for token in token_paths:
            with os.scandir(token) as entries:
                for entry in entries:
                    if entry.name.endswith(".object") and entry.name != "token.object":
                        stat = entry.stat(follow_symlinks=False)
                        path = f"{Path(token).name}/{entry.name}"
                        found.append((path, stat.st_ino, stat.st_size, stat.st_ctime_ns))
    except OSError:
        return None  # a token directory removed while it was read: said unchanged, never guessed changed
    return frozenset(found)


def mend_token_objects(token_dir: Path | None) -> None:
    """Put back a token's `token.object` that a process killed while rewriting it left empty, from its kept
    copy; else keep a copy of it. Before C_Initialize in this process (decision 0127).

    SoftHSM rewrites token.object at every C_Login (its flags), truncating it first, under an fcntl lock of
    the file: a SIGKILL between the two (a `sesame keys rotate` or a worker killed as it logs in) left it
    empty, and the token, its PIN and every key with it, was gone (`NoSuchToken`). The file is read and
    written here under the same lock; taken before this process loads the module, the lock cannot drop one
    the module holds (fcntl locks belong to the process). SoftHSM truncates the file as it opens it, before
    it takes the lock: an empty file may be a live rewrite waiting for the lock, not a killed one. It is put
    back only if it is still empty after the lock was let go for EMPTY_GRACE_SECONDS, long enough for a live
    writer to write (an outside audit saw a worker starting beside logins put the old copy back over a login's
    update, and say a process had been killed).
    """
    if token_dir is None:
        return
    with contextlib.suppress(OSError):
        for token in os.scandir(token_dir):
            if token.is_dir(follow_symlinks=False):
                _mend(Path(token.path))


def _mend(token: Path, grace: float = EMPTY_GRACE_SECONDS) -> None:
    kept = token / KEPT_COPY
    for last in (False, True):
        try:
            fd = os.open(token / "token.object", os.O_RDWR)
        except OSError:
            return  # a token being made, or not SoftHSM's
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            now = os.read(fd, os.fstat(fd).st_size)
            before = kept.read_bytes() if kept.is_file() else b""
            if now and now != before:
                _replace(kept, now)
            elif not now and before and last:
                _replace(token / "token.object", before)
                _log.warning(
                    "the HSM token's token.object under %s stayed empty (a process killed as SoftHSM "
                    "rewrote it): put back from %s",
                    token,
                    KEPT_COPY,
                )
            if now or not before:
                return
        finally:
            os.close(fd)  # the lock with it
        time.sleep(grace)  # lock let go: a live rewrite, waiting for it, writes meanwhile


def _replace(path: Path, content: bytes) -> None:
    """Write `content` aside, then rename it over `path`: never seen half written."""
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    aside.replace(path)

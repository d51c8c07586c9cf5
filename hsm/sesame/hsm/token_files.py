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

import os
from pathlib import Path

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

"""Processes found by their command line, read from /proc: the tests call no `pgrep` (procps is not installed
on a minimal Debian, and `make test` installs only what the tests need)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["processes_naming"]


def processes_naming(text: str) -> list[int]:
    """The ids of the live processes whose command line contains `text` (what `pgrep -f` would list)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        # Zombies have an empty command line: a child that exited is not a leftover.
        if text in argv.replace(b"\0", b" ").decode(errors="replace"):
            found.append(int(entry.name))
    return found

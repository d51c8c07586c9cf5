"""The commit the bench measures, read from the checkout's .git (the bench calls no program to learn it).

A worktree's `.git` is a file naming its git directory, whose `commondir` holds the shared refs; a branch
is a loose ref or a line of `packed-refs`. Outside a git checkout (an unpacked archive) the commit reads
`nogit`.
"""

from __future__ import annotations

from pathlib import Path

_SHORT = 7


def _git_dir(root: Path) -> Path | None:
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():
        named = dot_git.read_text().split("gitdir:", 1)[-1].strip()
        return (root / named).resolve()
    return None


def _ref(git_dir: Path, ref: str) -> str | None:
    common = git_dir / "commondir"
    shared = (git_dir / common.read_text().strip()).resolve() if common.is_file() else git_dir
    for base in (git_dir, shared):
        if (base / ref).is_file():
            return (base / ref).read_text().strip()
    packed = shared / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    return None


def short_commit(root: Path) -> str:
    """The abbreviated commit checked out under `root`, or `nogit`."""
    git_dir = _git_dir(root)
    if git_dir is None or not (git_dir / "HEAD").is_file():
        return "nogit"
    head = (git_dir / "HEAD").read_text().strip()
    sha = _ref(git_dir, head.removeprefix("ref: ")) if head.startswith("ref: ") else head
    return sha[:_SHORT] if sha else "nogit"

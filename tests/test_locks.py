"""The lock files pin every dependency pyproject.toml names.

A dependency added without `make lock` would be missing from a fresh clone's virtualenv: the locks are
installed with --require-hashes, and the project itself with --no-deps.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text(encoding="utf-8"))["project"]


def name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found is not None, requirement
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def pinned(lock: str) -> set[str]:
    """The names a lock file pins (`name==version`)."""
    text = ROOT.joinpath(lock).read_text(encoding="utf-8")
    return {name(line) for line in text.splitlines() if re.match(r"^[A-Za-z0-9][^ ]*==", line)}


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PROJECT["dependencies"]),
        ("requirements-dev.lock", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]),
    ],
)
def test_every_dependency_is_pinned(lock: str, requirements: list[str]) -> None:
    """Each runtime dependency is in both locks, each dev dependency in the dev lock."""
    assert {name(r) for r in requirements} - pinned(lock) == set()

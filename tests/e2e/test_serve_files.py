"""The development files that hold codes, numbers or the PIN are owner-only, however they were found."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.e2e.conftest import Served
from tests.support.serve_process import start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

_FILES = ("sms.jsonl", "softhsm/pin")
_DIRECTORIES = ("redis", "softhsm", "softhsm/tokens")


def _modes(var: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((var / name).stat().st_mode) for name in (*_FILES, *_DIRECTORIES)}


def _owner_only() -> dict[str, int]:
    return {**dict.fromkeys(_FILES, 0o600), **dict.fromkeys(_DIRECTORIES, 0o700)}


def test_a_fresh_var_is_created_owner_only(served: Served) -> None:
    """`sesame serve` on an empty var/ makes the SMS file and PIN 0600, the Redis and SoftHSM dirs 0700."""
    assert _modes(served.var) == _owner_only()


def test_looser_existing_files_are_tightened(tmp_path: Path) -> None:
    """Files and directories found world-readable from an earlier run are made owner-only at boot."""
    var = tmp_path / "var"
    for name in _DIRECTORIES:
        (var / name).mkdir(parents=True)
        (var / name).chmod(0o755)
    (var / "sms.jsonl").write_text("")
    (var / "softhsm" / "pin").write_text("a-pin-from-an-earlier-run")
    for name in _FILES:
        (var / name).chmod(0o644)

    serving = start_serve(var)
    try:
        assert _modes(var) == _owner_only()
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)


def test_the_journal_archive_is_owner_only(served: Served) -> None:
    """The journal's archive (its entries name users, payees and their IBANs, IPs and devices) is made
    owner-only: its directory 0700, its segments, index and lock 0600. It was 0755 and 0644, readable by
    every account on the host."""
    archive = served.var / "journal"
    assert until(lambda: any(archive.glob("segment-*.jsonl")), 30)  # the boot's first notes, sealed
    assert until((archive / "index.sqlite3").exists, 30)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o700
    files = [path for path in archive.iterdir() if path.is_file()]
    assert {path.name for path in files} >= {"archive.lock", "index.sqlite3"}
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == dict.fromkeys(
        (path.name for path in files), 0o600
    )

"""A SIGKILLed `sesame serve`'s metrics directory is removed by the next one to boot; a live one's is kept.

The supervisor sums its workers' files in a `sesame-metrics-*` directory under TMPDIR and removed it only
when it ended by itself: each supervisor killed left its directory for good. Each now holds an flock on the
directory's `supervisor.lock` for its life, and a booting supervisor removes the directories whose lock it
can take (decision 0114).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.serve_process import start_serve, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _metrics_dirs(tmp: Path) -> set[Path]:
    return set(tmp.glob("sesame-metrics-*"))


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not), read from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_killed_supervisors_metrics_directory_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    """Two servers on one host (a private TMPDIR), the first SIGKILLed with its workers: a third's boot
    removes the first's directory and keeps the second's, and a directory not provably ours."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    foreign = tmp / "sesame-metrics-foreign"  # no lock file: another program's, or an older version's
    foreign.mkdir()
    settings = {"TMPDIR": str(tmp)}
    first = start_serve(tmp_path / "var1", settings)
    (first_dir,) = _metrics_dirs(tmp) - {foreign}
    assert (first_dir / "supervisor.lock").is_file()
    second = start_serve(tmp_path / "var2", settings)
    third = None
    try:
        (second_dir,) = _metrics_dirs(tmp) - {foreign, first_dir}
        children = first.workers() | first.sealers()
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
        for child in children:
            os.kill(child, signal.SIGKILL)
        assert until(lambda: not any(_alive(child) for child in children), 10)
        assert first_dir.is_dir()  # nobody removed it: the supervisor was killed

        third = start_serve(tmp_path / "var3", settings)
        assert not first_dir.exists()
        (third_dir,) = _metrics_dirs(tmp) - {foreign, second_dir}
        assert second_dir.is_dir()
        assert foreign.is_dir()
        assert third_dir != first_dir
    finally:
        for serving in (second, third):
            if serving is not None:
                serving.process.terminate()
                serving.process.wait(timeout=30)
    assert second.process.returncode == 0, second.output()
    assert third is not None
    assert third.process.returncode == 0, third.output()
    assert _metrics_dirs(tmp) == {foreign}  # each removed its own at its end

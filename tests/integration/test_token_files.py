"""The mend of an emptied token.object (decision 0127) does not take a live rewrite for a killed one.

Found by an outside audit: SoftHSM truncates token.object as it opens it, then takes its lock and writes. A
worker starting beside a login read it empty under the lock, put the kept copy back over it (the login's
update then went into the file it had replaced) and warned of a process killed that never was.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sesame.hsm.token_files import KEPT_COPY, mend_token_objects

pytestmark = pytest.mark.integration

# A live rewrite as SoftHSM makes it: the file truncated as it is opened, the lock taken a moment later (here
# 50 ms: the wait of a login blocked behind another process's lock), then the new content written.
_REWRITE = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_TRUNC)
print("truncated", flush=True)
time.sleep(0.05)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.write(fd, b"NEW")
os.close(fd)
"""


def _token(tmp_path: Path) -> Path:
    token = tmp_path / "tokens" / "7da34ec3"
    token.mkdir(parents=True)
    (token / "token.object").write_bytes(b"OLD")
    (token / KEPT_COPY).write_bytes(b"OLD")
    return token


def test_a_rewrite_in_progress_is_left_to_its_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = _token(tmp_path)
    with subprocess.Popen(
        [sys.executable, "-c", _REWRITE, str(token / "token.object")], stdout=subprocess.PIPE, text=True
    ) as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "truncated\n"
        with caplog.at_level(logging.WARNING, logger="sesame.hsm"):
            mend_token_objects(tmp_path / "tokens")
        assert writer.wait(timeout=10) == 0
    assert (token / "token.object").read_bytes() == b"NEW"
    assert (token / KEPT_COPY).read_bytes() == b"NEW"
    assert not caplog.records


def test_a_file_a_killed_writer_left_empty_is_put_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = _token(tmp_path)
    (token / "token.object").write_bytes(b"")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="sesame.hsm"):
        mend_token_objects(tmp_path / "tokens")
    assert (token / "token.object").read_bytes() == b"OLD"
    assert [r.getMessage().partition(":")[0] for r in caplog.records] == [
        f"the HSM token's token.object under {token} stayed empty (a process killed as SoftHSM rewrote it)"
    ]
    assert time.monotonic() - started < 5

"""`sesame serve` whose journal archive fills its disk, then gets room again: the archive stays whole.

The archive directory is a small tmpfs, mounted in a mount namespace of the server's own (`unshare -m`:
nothing is mounted for the rest of the machine). Once the first blocks are archived, a file fills it but for
4 KiB, and a few Starts a second make lines longer than that (a block seals what came in since the last
step, about 650 bytes an entry), until the sealer logs `No space left on device` (or the index's failure,
when the line fitted and the index's row did not: the next line is then refused once the index caught up).
The file is then cut
4 KiB at a time, about a sealer step apart: the room passes through every size up to the refused line's,
among them one that takes all of the line but part of its last 8 KiB (what a buffered file keeps) and,
once the part written is cut, has room for the rest. More Starts are made and sealed, and `sesame journal
verify` checks a copy of the archive.

On main the write the disk cut short was taken back (cut to where the line began), but the buffered file
then wrote what it had kept of the line when it was closed, after the cut had freed the room: the end of a
line as a line of its own. The sealer then failed at every step (`unexpected JSONDecodeError`), no block was
archived again, and the archive did not verify (decision 0080).

Needs the right to mount a tmpfs in a new mount namespace (root, or CAP_SYS_ADMIN): skipped without.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.grpc.demo import demo_phone
from tests.support.serve_process import journal_verify, until
from tests.support.tmpfs_serve import TmpfsServe, serve_on_tmpfs

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Inside the namespace: mount, then wait for the test's word to fill the tmpfs (but for 4 KiB), to free the
# room and to copy the archive out (the tmpfs is seen by the server's namespace only); `exec` makes the
# server the process we started.
SCRIPT = """
set -e
mount -t tmpfs -o size=2m tmpfs "$MOUNT"
mkdir "$MOUNT/journal"
(
  while [ ! -e "$SIGNALS/fill" ]; do sleep 0.1; done
  avail=$(df -k --output=avail "$MOUNT" | tail -1)
  head -c $(( (avail - 4) * 1024 )) /dev/zero > "$MOUNT/filler" || true
  touch "$SIGNALS/filled"
  while [ ! -e "$SIGNALS/free" ]; do sleep 0.1; done
  size=$(stat -c %s "$MOUNT/filler")
  while [ "$size" -gt 4096 ]; do
    size=$(( size - 4096 ))
    truncate -s "$size" "$MOUNT/filler"
    sleep 1
    [ -e "$SIGNALS/freed" ] && break
  done
  rm "$MOUNT/filler"
  while [ ! -e "$SIGNALS/copy" ]; do sleep 0.1; done
  cp -r "$MOUNT/journal" "$SIGNALS/archive"
  touch "$SIGNALS/copied"
) &
exec "$PYTHON" -m sesame.server.cli serve
"""


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[TmpfsServe]:
    """`sesame serve` archiving to a nearly full tmpfs."""
    settings = {
        "SESAME_JOURNAL_ARCHIVE_DIR": str(tmp_path / "full" / "journal"),
        # Bursts of Starts from one caller: past the ceilings' defaults.
        "SESAME_SEND_CEILING_CALLER": "1000000",
        "SESAME_SEND_CEILING_GLOBAL": "1000000",
    }
    with serve_on_tmpfs(tmp_path, SCRIPT, settings) as served:
        yield served


def _starts(address: str, count: int) -> None:
    """`count` users enrolled, each with a transfer's challenge started (journal entries to seal)."""
    transfer = op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=125000),
            payee=op_pb.Payee(name="Jean DUPONT", iban="FR7630006000011234567890189"),
            transaction_id="tx-1",
        )
    )
    with grpc.insecure_channel(address) as channel:
        enrol, auth = enrol_grpc.EnrollmentServiceStub(channel), auth_grpc.AuthenticationServiceStub(channel)
        for _ in range(count):
            user_id = f"full-{os.urandom(6).hex()}"
            enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=demo_phone()),
                timeout=10,
            )
            auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer), timeout=10
            )


def _said(log: Path, *lines: str) -> bool:
    """Whether the server's output holds any of `lines`."""
    output = log.read_text(errors="replace")
    return any(line in output for line in lines)


def test_an_archive_whose_disk_filled_verifies_once_it_has_room_again(
    serving: TmpfsServe,
) -> None:
    """Full disk mid-line, then room: every line of the archive parses, sealing resumes, it verifies."""
    address, log, signals = serving.address, serving.log, serving.signals
    _starts(address, 5)
    time.sleep(3)  # the first blocks archived, the index made
    (signals / "fill").touch()
    assert until((signals / "filled").exists, 60), "the filler"
    deadline = time.monotonic() + 90
    while not _said(log, "No space left on device", "the archive's index failed"):
        assert time.monotonic() < deadline, "the archive never filled its disk"
        _starts(address, 3)
        time.sleep(0.5)
    (signals / "free").touch()
    # Until a step archives the refused block (`sealed again`), or on main leaves the end of its line.

    def archived() -> bool:
        return _said(log, "sealed again", "JSONDecodeError")

    assert until(archived, 120), "the refused block archived"
    (signals / "freed").touch()
    _starts(address, 20)
    time.sleep(4)  # a few sealer steps with room (it seals about every second)
    _starts(address, 5)
    time.sleep(4)
    (signals / "copy").touch()
    assert until((signals / "copied").exists, 60), "the archive's copy"
    output = log.read_text(errors="replace")
    assert "JSONDecodeError" not in output
    archive = signals / "archive"
    done = journal_verify(archive, signals.parent / "var")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.startswith("verified ")
    # Sealing resumed after the disk had room: blocks were archived after the refused one.
    blocks = int(done.stdout.split()[1])
    refused = output.count("No space left on device")
    assert blocks >= 3, (blocks, refused)

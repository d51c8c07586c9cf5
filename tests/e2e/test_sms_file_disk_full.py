"""`sesame serve` whose console SMS file fills its disk, then gets room again: every line of the file stays
one whole SMS.

The file is on a small tmpfs, mounted in a mount namespace of the server's own (`unshare -m`, as
test_archive_disk_full does). It is filled but for 4 KiB, Starts are made one at a time until the console
gateway fails a send (`console SMS file not writable`), the room is given back, one more Start is made, and
the file is copied out.

Found in a drill: the send the disk cut short left the part of its line that fitted (a phone number and a
code with no end), the SMS was recorded failed, and the next SMS written once there was room was appended to
that part: one line holding the end of one SMS and the whole of the next, which no reader parses (`sesame
demo` skips it as a line being written, a JSON-lines reader fails on it), so the code sent after the disk had
room again could not be read.

Needs the right to mount a tmpfs in a new mount namespace (root, or CAP_SYS_ADMIN): skipped without.
"""

from __future__ import annotations

import json
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
from tests.support.serve_process import until
from tests.support.tmpfs_serve import TmpfsServe, serve_on_tmpfs

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Inside the namespace: mount, then wait for the test's word to fill the tmpfs (but for 4 KiB), to free the
# room and to copy the SMS file out (the tmpfs is seen by the server's namespace only).
SCRIPT = """
set -e
mount -t tmpfs -o size=1m tmpfs "$MOUNT"
(
  while [ ! -e "$SIGNALS/fill" ]; do sleep 0.1; done
  avail=$(df -k --output=avail "$MOUNT" | tail -1)
  head -c $(( (avail - 4) * 1024 )) /dev/zero > "$MOUNT/filler" || true
  touch "$SIGNALS/filled"
  while [ ! -e "$SIGNALS/free" ]; do sleep 0.1; done
  rm "$MOUNT/filler"
  touch "$SIGNALS/freed"
  while [ ! -e "$SIGNALS/copy" ]; do sleep 0.1; done
  cp "$MOUNT/sms.jsonl" "$SIGNALS/sms.jsonl"
  touch "$SIGNALS/copied"
) &
exec "$PYTHON" -m sesame.server.cli serve
"""

LOGIN = op_pb.Operation(login=op_pb.Login())


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[TmpfsServe]:
    """`sesame serve` writing its console SMS to a tmpfs."""
    with serve_on_tmpfs(
        tmp_path, SCRIPT, {"SESAME_SMS_CONSOLE_FILE": str(tmp_path / "full" / "sms.jsonl")}
    ) as served:
        yield served


def _start(address: str) -> str:
    """A user enrolled (a number of its own) and a login challenge started for it: the challenge's id."""
    with grpc.insecure_channel(address) as channel:
        enrol, auth = enrol_grpc.EnrollmentServiceStub(channel), auth_grpc.AuthenticationServiceStub(channel)
        user_id = f"full-{os.urandom(6).hex()}"
        enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=demo_phone()),
            timeout=10,
        )
        started = auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=LOGIN), timeout=10
        )
        challenge_id: str = started.challenge_id
        return challenge_id


def test_an_sms_file_whose_disk_filled_holds_whole_lines_once_it_has_room_again(
    serving: TmpfsServe,
) -> None:
    address, log, signals = serving.address, serving.log, serving.signals
    (signals / "fill").touch()
    assert until((signals / "filled").exists, 30), "the filler"
    for _ in range(40):  # about 400 bytes a line: 4 KiB fill within a dozen
        _start(address)
        time.sleep(0.3)  # its dispatcher sent it (or failed to)
        if "console SMS file not writable" in log.read_text(errors="replace"):
            break
    else:
        raise AssertionError("the SMS file never filled its disk")
    (signals / "free").touch()
    assert until((signals / "freed").exists, 30), "the room given back"
    after = _start(address)
    time.sleep(1)
    (signals / "copy").touch()
    assert until((signals / "copied").exists, 30), "the SMS file's copy"
    text = (signals / "sms.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    sent = [json.loads(line) for line in text.splitlines()]  # every line one whole SMS
    assert sent[-1]["challenge_id"] == after

"""Fresh request ids (decision 0049): 32 hex digits, never repeated in a process, another prefix in a forked
child; a caller's well-formed id is kept."""

from __future__ import annotations

import os
import re

from sesame.server.grpc.call_context import REQUEST_ID_KEY, fresh_ids, request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_fresh_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [request_id(()) for _ in range(10_000)]
    assert all(HEX32.fullmatch(rid) for rid in ids)
    assert len(set(ids)) == len(ids)


def test_a_callers_well_formed_id_is_kept_and_a_malformed_one_replaced() -> None:
    assert request_id(((REQUEST_ID_KEY, "bank-req-42"),)) == "bank-req-42"
    assert HEX32.fullmatch(request_id(((REQUEST_ID_KEY, "with space"),)))


def test_a_forked_child_draws_another_prefix() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its prefix and leave at once
        os.write(write, fresh_ids.prefix.encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert HEX32.fullmatch(child + child)
    assert child != fresh_ids.prefix

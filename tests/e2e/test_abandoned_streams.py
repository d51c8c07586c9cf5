"""A response stream whose caller leaves while an answer waits to be sent (its flow-control window spent, or
the peer gone) logged two ERRORs with tracebacks ("Task exception was never retrieved") per stream: grpc.aio
drops the stream's generator at its `yield`, asyncio's finalizer closes it in a task and context of its own,
and our wrappers' reset of the call's context variables raised ValueError there. Any caller of reflection
could write them, as fast as it opened streams. They are closed quietly now (decision 0141).

The caller is raw HTTP/2: SETTINGS_INITIAL_WINDOW_SIZE 0, so no answer can leave; one ServerReflectionInfo
request (list the services), then the connection closed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from grpc_reflection.v1alpha import reflection_pb2

from tests.e2e.conftest import Served
from tests.support.http2 import (
    DATA,
    END_HEADERS,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    frame,
    grpc_headers,
    grpc_message,
    opened,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

STREAMS = 5
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def _log(served: Served) -> Path:
    return served.var.with_name(f"{served.var.name}-serve.log")


def test_a_stream_given_up_while_its_answer_waits_logs_no_error(served: Served) -> None:
    """STREAMS reflection streams, each given up with its answer unsent: no ERROR, no traceback logged."""
    log = _log(served)
    start = len(log.read_bytes())
    request = grpc_message(reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString())
    for _ in range(STREAMS):
        with opened(served.address, {INITIAL_WINDOW_SIZE: 0}) as sock:
            sock.sendall(
                frame(HEADERS, END_HEADERS, 1, grpc_headers(REFLECTION, served.address))
                + frame(DATA, 0, 1, request)
            )
            time.sleep(0.3)  # the answer is made, and waits for a window that never opens
    time.sleep(2)  # the streams' generators are dropped and finalized
    written = log.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in written
    assert " ERROR " not in written, written[-3000:]

"""How long `sesame evidence` waits before asking a shed call again (decision 0146): the RetryInfo of an
OVERLOADED answer, held within 1 to 30 s; no wait (the error stands) for any other answer or for details
that do not parse."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from sesame.server.grpc.evidence_client import _shed_wait


class _Answer:
    """The part of a refused call `_shed_wait` reads: its trailing metadata."""

    def __init__(self, details_bin: bytes | None) -> None:
        self._metadata = () if details_bin is None else (("grpc-status-details-bin", details_bin),)

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._metadata


def _status(reason: str | None, delay: timedelta | None) -> bytes:
    details = []
    if reason is not None:
        details.append(_packed(error_details_pb2.ErrorInfo(reason=reason, domain="sesame")))
    if delay is not None:
        wait = duration_pb2.Duration()
        wait.FromTimedelta(delay)
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=wait)))
    return status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], details=details).SerializeToString()


def _packed(detail: error_details_pb2.ErrorInfo | error_details_pb2.RetryInfo) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


@pytest.mark.parametrize(
    ("delay", "wait"),
    [
        (timedelta(seconds=1), 1.0),
        (timedelta(seconds=7), 7.0),
        (timedelta(microseconds=1), 1.0),  # no busy loop on a tiny delay
        (timedelta(seconds=-5), 1.0),  # nor a crash on a negative one
        (timedelta(hours=1), 30.0),  # nor an hour asleep
        (None, 1.0),  # OVERLOADED without RetryInfo
    ],
)
def test_a_shed_answer_is_asked_again_after_its_delay_held_within_bounds(
    delay: timedelta | None, wait: float
) -> None:
    assert _shed_wait(_Answer(_status("OVERLOADED", delay))) == wait  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "details_bin",
    [
        None,  # no rich status
        _status("KEY_VERSION_UNAVAILABLE", timedelta(seconds=1)),  # another UNAVAILABLE
        _status("CLOCK_OUT_OF_STEP", timedelta(seconds=1)),
        _status(None, timedelta(seconds=1)),  # RetryInfo alone (a store unavailable)
        b"\xff\xff not a status",  # a proxy's bytes
    ],
)
def test_any_other_answer_is_not_asked_again(details_bin: bytes | None) -> None:
    assert _shed_wait(_Answer(details_bin)) is None  # type: ignore[arg-type]

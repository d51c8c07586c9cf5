"""grpc's ERROR for an answer that found its call ended on the caller's side (decision 0084, amended):
an INFO line once a server of ours has started, without the traceback; grpc's other records unchanged.

The race itself (a deadline passing as the answer leaves) came about once in 300 calls with deadlines of
0.3-6 ms and cannot be had on demand, so the record is logged here as grpc's core logs it: same logger,
same message, at ERROR with the exception."""

from __future__ import annotations

import logging

import pytest

from tests.e2e.conftest import Live

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GRPC_LOG = logging.getLogger("grpc._cython.cygrpc")
METHOD = "/sesame.api.v1.AuthenticationService/StartChallenge"


def _as_grpc_logs(message: str) -> None:
    """As grpc's `_handle_exceptions` logs: the message formatted already, with the exception."""
    try:
        _fail()
    except RuntimeError:
        GRPC_LOG.exception(message % METHOD)


def _fail() -> None:
    raise RuntimeError('Failed "execute_batch"')


async def test_an_answer_sent_too_late_is_an_info_line(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    """The server started: the record is INFO, names the method, carries no traceback."""
    assert live.address
    caplog.set_level(logging.DEBUG, logger=GRPC_LOG.name)

    _as_grpc_logs("ExecuteBatchError raised in core by servicer method [%s]")

    [record] = [r for r in caplog.records if r.name == GRPC_LOG.name]
    assert (record.levelname, record.exc_info) == ("INFO", None)
    assert (
        record.getMessage() == f"an answer of {METHOD} was not sent: the call had ended on the caller's side"
    )
    assert "Traceback" not in caplog.text


async def test_other_grpc_errors_pass_unchanged(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    """Any other ERROR of grpc's stays an ERROR with its traceback."""
    assert live.address
    caplog.set_level(logging.DEBUG, logger=GRPC_LOG.name)

    _as_grpc_logs("Unexpected [RuntimeError] raised by servicer method [%s]")

    [record] = [r for r in caplog.records if r.name == GRPC_LOG.name]
    assert record.levelname == "ERROR"
    assert record.exc_info is not None

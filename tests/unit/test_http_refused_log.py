"""The DLR listener's log of the requests aiohttp's parser refuses: the class of error only, without the
request (it holds the token), at most one line a minute per class (an outside audit, Z4: 1000 request lines
over 8 KiB wrote 1000 WARNINGs)."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from sesame.clients.http_listener import _WithoutTheRequest
from sesame.server.domain.log_quota import LogQuota

TOKEN = "t" * 43


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refused(error: Exception) -> logging.LogRecord:
    """The record aiohttp's connection handler makes of a request its parser refused."""
    return logging.LogRecord(
        "sesame.http.server",
        logging.ERROR,
        __file__,
        0,
        "Error handling request",
        (),
        (type(error), error, None),
    )


def test_parser_refusals_are_logged_once_a_minute_per_class_of_error() -> None:
    """Three lines too long, then a head of too many fields, then a line too long a minute later: the first
    of each class is logged, the next one of a class counts the two held back, none names the request."""
    ticks = Ticks()
    redacted = _WithoutTheRequest(LogQuota(60, ticks))
    too_long = LineTooLong(f"GET /dlr/kannel?token={TOKEN}", "8190")
    kept = [
        redacted.filter(record) for record in (_refused(too_long), _refused(too_long), _refused(too_long))
    ]
    assert kept == [True, False, False]
    assert redacted.filter(_refused(BadHttpMessage("Too many headers received")))
    ticks.now += 60
    record = _refused(too_long)
    assert redacted.filter(record)
    assert (record.levelno, record.exc_info) == (logging.WARNING, None)
    assert record.getMessage() == (
        "HTTP request refused: LineTooLong; 2 more such requests were not logged in the last 60 s"
    )

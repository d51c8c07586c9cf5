"""Field-by-field checks of a request: every violation collected, then raised once (google.rpc.BadRequest)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from sesame.server.domain import validation
from sesame.server.domain.errors import FieldViolation, InvalidRequest

_T = TypeVar("_T")
_V = TypeVar("_V")


class Fields:
    """Runs field checks and remembers every violation, so the caller learns all of them at once."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def check(self, path: str, check: Callable[[_V], _T], value: _V) -> _T:
        """The checked value; on a violation, remember it (the value returned is never used)."""
        try:
            return check(value)
        except ValueError as exc:
            self.violations.append(FieldViolation(path, str(exc)))
            return None  # type: ignore[return-value]  # never used: raise_if_any() raises first

    def missing(self, path: str) -> None:
        """Remember that a required field is absent."""
        self.violations.append(FieldViolation(path, "is required"))

    def raise_if_any(self) -> None:
        """InvalidRequest with every violation, if there is one."""
        if self.violations:
            raise InvalidRequest(self.violations)


def bounded(limit: int) -> Callable[[str], str]:
    """A check of printable text of at most `limit` characters (may be empty)."""
    return lambda value: validation.bounded_text(value, limit)


def required(limit: int) -> Callable[[str], str]:
    """A check of printable text of 1 to `limit` characters."""
    return lambda value: validation.required_text(value, limit)


def instant(value: Timestamp) -> datetime:
    """A Timestamp as an aware datetime (UTC). ValueError for one no datetime holds (before year 1, after
    year 9999, nanos outside a second): a caller's error, where protobuf's own ValueError was a crash."""
    try:
        return value.ToDatetime(tzinfo=UTC)
    except ValueError:
        raise ValueError("is not an instant between the years 1 and 9999") from None

"""How a store failure is named in StoreUnavailable and the refused call's log line (decision 0062):
redis-py's class, and Redis's reply code for a bare ResponseError, never the rest of the reply (which may
quote keys)."""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors
from redis.exceptions import BusyLoadingError, OutOfMemoryError, ReadOnlyError, ResponseError

from sesame.clients.redis_scripts import failure, fault
from sesame.server.domain.errors import StoreCorrupt


@pytest.mark.parametrize(
    ("error", "named"),
    [
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), "OutOfMemoryError"),
        (ReadOnlyError("You can't write against a read only replica."), "ReadOnlyError"),
        (BusyLoadingError("Redis is loading the dataset in memory"), "BusyLoadingError"),
        (redis_errors.ConnectionError("Connection closed by server."), "ConnectionError"),
        (TimeoutError(), "TimeoutError"),
        (ResponseError("MISCONF Redis is configured to save RDB snapshots"), "ResponseError MISCONF"),
        (ResponseError("BUSY Redis is busy running a script."), "ResponseError BUSY"),
        (
            ResponseError(
                "Command # 1 (EVALSHA abc 1 sesame:{u:alice}) of pipeline caused error: ('BUSY x',)"
            ),
            "ResponseError BUSY",
        ),
        # A script's own error: its text is not Redis's code, and may name a key.
        (ResponseError("user_script:12: sesame:{u:alice} WRONGTYPE"), "ResponseError"),
    ],
)
def test_a_store_failure_is_named_by_its_class_and_redis_code(error: Exception, named: str) -> None:
    assert fault(error) == named


def test_a_damaged_record_is_named_without_the_scripts_hash_and_line() -> None:
    """A step's refusal of a damaged record, as Redis 7 replies it: the record named, not where in which
    script (the hash and line Redis appends tell an operator nothing and an attacker which line checks)."""
    refused = failure(ResponseError("CORRUPT user record script: 4f1c0e2a9b, on @user_script:49."))
    assert isinstance(refused, StoreCorrupt)
    assert str(refused) == "CORRUPT user record"

"""How a user id is shown in logs: at least half hidden, the ends kept."""

from __future__ import annotations

import pytest

from sesame.server.domain.privacy import mask_user


@pytest.mark.parametrize(
    ("user_id", "shown"),
    [
        ("1234567890", "12******90"),
        ("+33612345678", "+3********78"),
        ("alice", "a***e"),
        ("bob", "***"),
        ("", ""),
    ],
)
def test_a_user_id_is_masked(user_id: str, shown: str):
    """Customer numbers, phone numbers and names keep their ends only; a short id is hidden whole."""
    assert mask_user(user_id) == shown


@pytest.mark.parametrize("user_id", ["abcd", "abcdefg", "abcdefgh", "x" * 64])
def test_at_least_half_is_hidden(user_id: str):
    """Whatever the length, no more than half of the id shows."""
    assert mask_user(user_id).count("*") * 2 >= len(user_id)

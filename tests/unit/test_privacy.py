"""How a phone number and a user id are shown in logs, the journal and answers: the ends kept, no more."""

from __future__ import annotations

import phonenumbers
import pytest

from sesame.server.domain.privacy import mask_phone, mask_user


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


@pytest.mark.parametrize(
    ("phone", "shown"),
    [
        ("+33612345678", "+33*******78"),
        ("+352621123456", "+352*******56"),
        ("+12025550123", "+1********23"),
        ("+79123456789", "+7********89"),
        ("+999999999999999", "+999**********99"),  # unassigned: 3 digits, as every code not of 1 or 2
    ],
)
def test_a_number_shows_its_country_code_and_last_two_digits(phone: str, shown: str):
    """The country code whole, whatever its length, then only the last two digits."""
    assert mask_phone(phone) == shown


@pytest.mark.parametrize(
    ("phone", "shown"),
    [
        ("", ""),
        ("+", "*"),
        ("+1234", "*****"),
        ("+12345", "+1**45"),
        ("+35212", "******"),
        ("+352123", "+352*23"),
    ],
)
def test_a_short_number_hides_at_least_one_digit(phone: str, shown: str):
    """Shorter than 6, or nothing left between the country code and the last two digits: all hidden."""
    assert mask_phone(phone) == shown


@pytest.mark.parametrize("code", sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE))
def test_every_country_code_is_kept_whole_and_alone(code: int):
    """For every calling code libphonenumber knows, the mask keeps `+<code>` and hides the digit after it."""
    assert mask_phone(f"+{code}612345678").startswith(f"+{code}*")

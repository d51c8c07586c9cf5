"""The first factor: its amr values, its claim, its journal fields and its age (decision 0035)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sesame.server.domain import factors
from sesame.server.domain.errors import InvalidRequest
from sesame.server.domain.factors import FactorCategory, FirstFactor

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PASSWORD = FirstFactor(FactorCategory.KNOWLEDGE, "password", NOW - timedelta(minutes=3))


def test_every_method_names_a_registered_amr_value_of_its_category() -> None:
    """Each method maps to an RFC 8176 value; the SMS code is possession."""
    registered = {"face", "fpt", "hwk", "kba", "pin", "pwd", "sc", "swk"}
    assert {method.amr for method in factors.METHODS.values()} <= registered
    assert factors.SMS_CATEGORY is FactorCategory.POSSESSION


@pytest.mark.parametrize(
    ("factor", "expected"),
    [
        (None, ["otp", "sms"]),
        (PASSWORD, ["mfa", "otp", "pwd", "sms"]),
        (FirstFactor(FactorCategory.INHERENCE, "face", NOW), ["face", "mfa", "otp", "sms"]),
        (FirstFactor(FactorCategory.POSSESSION, "device-binding", NOW), ["otp", "sms", "swk"]),
    ],
)
def test_amr_names_mfa_only_for_two_categories(factor: FirstFactor | None, expected: list[str]) -> None:
    """mfa when the first factor is not possession, as the SMS code is (RTS Art. 4(1))."""
    assert factors.amr(factor) == expected


def test_the_journal_fields_read_back_as_the_factor() -> None:
    """Written then read, the factor is the same; an entry without one reads None."""
    bound = FirstFactor(FactorCategory.POSSESSION, "device-binding", NOW, "db-1")
    fields = factors.journal_fields(bound, NOW.isoformat())
    assert factors.from_journal(fields) == bound
    assert factors.journal_fields(None, "") == {}
    assert factors.from_journal({"event": "challenge.verification"}) is None


def test_the_claim_carries_the_reference_only_when_given() -> None:
    """Unix seconds for the time; `ref` absent when the caller sent none."""
    assert factors.claim(PASSWORD) == {
        "category": "knowledge",
        "method": "password",
        "verified_at": int(PASSWORD.verified_at.timestamp()),
    }
    assert (
        factors.claim(FirstFactor(FactorCategory.POSSESSION, "smartcard", NOW, "card-9"))["ref"] == "card-9"
    )


@pytest.mark.parametrize(
    "at", [NOW + timedelta(seconds=6), NOW - timedelta(hours=1, seconds=1)], ids=["future", "stale"]
)
def test_a_factor_from_the_future_or_too_old_is_invalid(at: datetime) -> None:
    """Beyond 5 s ahead, or older than the maximum age: InvalidRequest on first_factor.verified_at."""
    with pytest.raises(InvalidRequest) as raised:
        factors.check_age(FirstFactor(FactorCategory.KNOWLEDGE, "pin", at), NOW, timedelta(hours=1))
    assert [v.field for v in raised.value.violations] == ["first_factor.verified_at"]


def test_a_factor_within_its_age_or_none_passes() -> None:
    """Just verified, a little skewed, or not sent at all: accepted."""
    for at in (NOW, NOW + timedelta(seconds=5), NOW - timedelta(hours=1)):
        factors.check_age(FirstFactor(FactorCategory.KNOWLEDGE, "pin", at), NOW, timedelta(hours=1))
    factors.check_age(None, NOW, timedelta(hours=1))


def test_the_claim_names_the_factor_stated_at_start_beside_verifys() -> None:
    """Start's factor, when it is another, is named under `start`; the one the proof names says which calls
    stated it; a factor stated again to the microsecond is the same factor (claims are to the second)."""
    at = datetime(2026, 12, 1, 9, 0, 0, 120_000, tzinfo=UTC)
    binding = FirstFactor(FactorCategory.POSSESSION, "device-binding", at, "db-1")
    password = FirstFactor(FactorCategory.KNOWLEDGE, "password", at)
    both = factors.proof_claim(binding, password)
    assert both is not None
    assert (both["method"], both["stated_at"], both["start"]["method"]) == (
        "password",
        ["verify"],
        "device-binding",
    )
    again = factors.proof_claim(
        binding, FirstFactor(FactorCategory.POSSESSION, "device-binding", at.replace(microsecond=999), "db-1")
    )
    assert again is not None
    assert (again["stated_at"], "start" in again) == (["start", "verify"], False)
    assert factors.proof_claim(None, None) is None
    assert factors.amr(binding, password) == ["mfa", "otp", "pwd", "sms", "swk"]

"""Input checks: each returns the normalised value or raises ValueError."""

from __future__ import annotations

import pytest

from sesame.server.domain import validation
from sesame.server.domain.operation import Money
from sesame.server.domain.sms_text import format_amount


def test_mobile_phone_accepts_a_french_mobile() -> None:
    """+33 6... is a mobile number and comes back in E.164."""
    assert validation.mobile_phone("+33612345678") == "+33612345678"


@pytest.mark.parametrize("value", ["0612345678", "+33140000000", "+3361234", "+999123456789", "", "+33 6x"])
def test_mobile_phone_refuses_other_numbers(value: str) -> None:
    """National form, landlines, invalid numbers and garbage are refused."""
    with pytest.raises(ValueError, match=r"."):
        validation.mobile_phone(value)


def test_iban_is_compacted() -> None:
    """Spaces are removed and the checksum verified."""
    assert validation.iban("FR76 3000 6000 0112 3456 7890 189") == "FR7630006000011234567890189"


@pytest.mark.parametrize(
    "value",
    [
        "FR7630006000011234567890188",
        "XX00",
        "",
        "FR76" + "1" * 60,
        "\u0131T60X0542811101000000123456",  # upper-cased, a dotless i reads `I`: a valid Italian IBAN
        "\u017fE4550000000058398257466",  # a long s reads `S`
    ],
)
def test_iban_refuses_bad_checksums_and_garbage(value: str) -> None:
    """A wrong check digit is caught."""
    with pytest.raises(ValueError, match=r"."):
        validation.iban(value)


@pytest.mark.parametrize("value", ["EUR", "JPY", "KWD"])
def test_currency_accepts_iso_4217(value: str) -> None:
    """Active codes pass."""
    assert validation.currency_code(value) == value


@pytest.mark.parametrize(
    "value",
    # Fund codes, units of account no transfer is paid in (CLF, UYI, UYW were accepted: an outside audit,
    # AR4), and precious metals.
    ["", "eur", "EURO", "XXX", "ABC", "CLF", "UYI", "UYW", "BOV", "CHE", "CHW", "COU", "MXV", "USN", "XAU"],
)
def test_currency_refuses_unknown_codes(value: str) -> None:
    """Unknown or lower-case codes are refused, and so are fund codes and metals."""
    with pytest.raises(ValueError, match=r"."):
        validation.currency_code(value)


@pytest.mark.parametrize("value", [0, -1, validation.MAX_AMOUNT_MINOR + 1])
def test_amount_must_be_positive_and_bounded(value: int) -> None:
    """Zero, negative and absurd amounts are refused."""
    with pytest.raises(ValueError, match=r"."):
        validation.amount_minor(value)


def test_payee_name_is_normalised() -> None:
    """Inner spaces collapse (a no-break space too) and Unicode is NFC: one name always binds the same."""
    assert validation.payee_name("  Zoe\u0301   Durand\u00a0SA ") == "Zoé Durand SA"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "x" * 71,
        "Jean\x00Dupont",
        # Found by an outside audit: whitespace that is no space was collapsed into one before the check.
        *(f"Jean{sep}DUPONT" for sep in ("\n", "\r\n", "\t", "\x1c", "\x85", "\v", "\f", "\u2028", "\u2029")),
        "Jean" + " " * 60 + "DUPONT SA",  # 73 characters as sent, 19 once collapsed
    ],
)
def test_payee_name_refuses_empty_oversized_and_control(value: str) -> None:
    """Empty, over 70 characters, or control characters."""
    with pytest.raises(ValueError, match=r"."):
        validation.payee_name(value)


@pytest.mark.parametrize(
    "value",
    [
        "http://x.io",
        "HTTPS://EVIL",
        "www.ma-banque-secure",
        "help@bank.example",
        "WWW.ma-banque.fr",
        "Service client <aide@ma-banque.fr>",
    ],
)
def test_payee_name_refuses_links(value: str) -> None:
    """Anything a phone would turn into a link is refused, since the name is printed in the SMS."""
    with pytest.raises(ValueError, match="address"):
        validation.payee_name(value)


@pytest.mark.parametrize(
    "value",
    [
        "S.A.R.L. Dupont & Fils",
        "J. Dupont",
        "Zoé O'Neil-Durand",
        "SCI 12.5 Rue",
        "ETS.DUPONT",  # `.dupont` is a delegated top-level domain: still a name
        "DUPONT.SA",
        "ma-banque-secure.com",  # a bare host: the SMS prints it without its dot
    ],
)
def test_payee_name_keeps_ordinary_names(value: str) -> None:
    """Initials, company forms, apostrophes, numbers and dotted names are not mistaken for links."""
    assert validation.payee_name(value) == value


@pytest.mark.parametrize("value", ["", "a" * 129, "has space", "é"])
def test_identifier_alphabet_and_length(value: str) -> None:
    """Ids are 1 to 128 characters of a safe alphabet."""
    with pytest.raises(ValueError, match=r"."):
        validation.identifier(value)


@pytest.mark.parametrize("value", ["12345", "1234567", "12345a", "١٢٣٤٥٦"])
def test_code_must_be_exact_ascii_digits(value: str) -> None:
    """Wrong length, letters and non-ASCII digits are refused."""
    with pytest.raises(ValueError, match=r"."):
        validation.code(value, 6)


def test_locale_defaults_to_french() -> None:
    """An empty locale means fr; others must be supported."""
    assert validation.locale("") == "fr"
    with pytest.raises(ValueError, match=r"."):
        validation.locale("de")


def test_an_amount_in_a_fund_code_accepted_before_is_still_written() -> None:
    """A challenge opened in CLF before the fund codes were refused still gets its SMS, with 4 decimals."""
    assert format_amount(Money("CLF", 12345), "fr") == "1,2345 CLF"

"""Where Sésame sends SMS: an allow-list of destination countries (ISO 3166-1 alpha-2, as libphonenumber names
regions). A defence against SMS pumping to premium-rate foreign ranges (docs/decisions/0011).
"""

from __future__ import annotations

import functools

import phonenumbers

from sesame.server.domain.errors import DestinationNotAllowed, FieldViolation, InvalidRequest

# The EU's 27 and the EEA's 3 (IS, LI, NO); France's overseas regions and collectivities, which have
# their own region codes in libphonenumber (GP, MQ, GF, RE, YT, PM, BL, MF, WF, PF, NC); and Monaco,
# whose residents bank in France. Everything else is opened by the operator (SESAME_SMS_COUNTRIES).
EEA = frozenset(
    {
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
        "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "IS", "LI", "NO",
    }
)  # fmt: skip
FRENCH_OVERSEAS = frozenset({"GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF", "WF", "PF", "NC"})
DEFAULT_COUNTRIES = EEA | FRENCH_OVERSEAS | {"MC"}


def unknown_regions(codes: frozenset[str]) -> list[str]:
    """The codes libphonenumber does not know as a region (a typo in the allow-list), sorted."""
    return sorted(codes - phonenumbers.SUPPORTED_REGIONS)


def region(e164: str) -> str:
    """The region code of an E.164 number (`FR`), or `ZZ` when libphonenumber cannot tell."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return "ZZ"
    return phonenumbers.region_code_for_number(number) or "ZZ"


def check_destination(e164: str, countries: frozenset[str]) -> None:
    """Refuse a number outside the allow-list. DestinationNotAllowed names the region, never the number."""
    code = region(e164)
    if code not in countries:
        raise DestinationNotAllowed(code)


def check_enrolled_phone(field: str, e164: str, countries: frozenset[str]) -> None:
    """Refuse, as bad input on `field`, a secure number Sésame would never send a code to."""
    code = region(e164)
    if code not in countries:
        reason = f"is in a country Sésame does not send SMS to ({code})"
        raise InvalidRequest([FieldViolation(field, reason)])


@functools.cache
def whole_calling_codes(countries: frozenset[str]) -> frozenset[str]:
    """The calling codes (`+33`) all of whose regions are in the allow-list: any number under one may be sent
    to without asking libphonenumber, as Start's script does (docs/decisions/0025). A code shared with a
    region outside the list (+47 with Svalbard, +1) is not among them: its numbers are checked one by one."""
    return frozenset(
        f"+{code}"
        for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
        if regions and set(regions) <= countries
    )

"""ISO 4217 currencies and their minor units, to validate amounts, to write them in an SMS and to read them
in major units for the risk rules."""

from __future__ import annotations


def _codes(text: str) -> list[str]:
    return text.split()


# Active ISO 4217 codes whose minor unit is not 2. Fund codes (units of account: BOV, CHE, CHW, CLF, COU,
# MXV, USN, UYI, UYW) and precious metals are refused: no transfer is paid in them (CLF, UYI and UYW were
# accepted, and an SMS said "ENVOYER 1,2345 CLF": an outside audit, AR4).
_EXPONENTS_NOT_2: dict[str, int] = {
    **dict.fromkeys(_codes("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"), 0),
    **dict.fromkeys(_codes("BHD IQD JOD KWD LYD OMR TND"), 3),
}
# The fund codes once accepted: never for a new operation, but an amount stored in one before (an SMS still
# queued, a journal's operation in a bundle) is still written with its decimals.
_FUNDS_ONCE_ACCEPTED: dict[str, int] = {"UYI": 0, "CLF": 4, "UYW": 4}

_EXPONENT_2 = frozenset(
    _codes(
        """
        AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD
        CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD
        HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD
        MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON
        RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD
        TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW ZWG
        """
    )
)


def minor_unit_exponent(currency: str) -> int:
    """Number of decimals of `currency`; KeyError when it is not an active ISO 4217 code (or a fund code
    accepted before)."""
    if currency in _EXPONENTS_NOT_2:
        return _EXPONENTS_NOT_2[currency]
    if currency in _EXPONENT_2:
        return 2
    return _FUNDS_ONCE_ACCEPTED[currency]


def minor_units_per_major(currency: str) -> int:
    """How many minor units make one major unit of `currency` (1 JPY, 100 EUR, 1000 KWD): 10 to the power
    of its exponent; KeyError when it is not an active ISO 4217 code."""
    return int(10 ** minor_unit_exponent(currency))  # int: mypy reads int ** int as Any (a negative power)


def is_known(currency: str) -> bool:
    """Whether `currency` is an active ISO 4217 alphabetic code."""
    return currency in _EXPONENT_2 or currency in _EXPONENTS_NOT_2


def known_codes() -> frozenset[str]:
    """Every active ISO 4217 alphabetic code an amount may be in."""
    return _EXPONENT_2 | frozenset(_EXPONENTS_NOT_2)

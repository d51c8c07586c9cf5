"""The SMPP provider's settings: the SMSC, the account, the sender, the throttle and the timers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sesame.server.env_reader import EnvReader
from sesame.server.sms_settings import read_sender

# SMPP 3.4 §4.1.5: system_id at most 15 octets, password 8, system_type 12 (each plus its NUL).
_SYSTEM_ID: Final = re.compile(r"[\x21-\x7e]{1,15}")
_PASSWORD: Final = re.compile(r"[\x21-\x7e]{1,8}")
_SYSTEM_TYPE: Final = re.compile(r"[\x21-\x7e]{0,12}")
_DIGITS: Final = re.compile(r"[0-9]{1,20}")
_SOURCE: Final = re.compile(r"[A-Za-z0-9 ]{1,11}|[0-9]{1,20}")
TON_ALPHANUMERIC, TON_INTERNATIONAL = 5, 1
NPI_UNKNOWN, NPI_E164 = 0, 1


@dataclass(frozen=True, slots=True)
class SmppSettings:
    """Where the SMSC is, who we are to it, what we show as sender, how fast and how long we wait."""

    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str
    source: str  # the sender: an alphanumeric id, or digits
    source_ton: int
    source_npi: int
    window: int  # submit_sm awaiting their answer at once
    rate: int  # submit_sm a second
    enquire_link: float  # seconds between keep-alives
    connect_timeout: float
    response_timeout: float


def read_smpp(reader: EnvReader, bank_name: str) -> SmppSettings:
    """The SMPP settings; host, system id and password are required, the rest has defaults."""
    host = reader.optional("SESAME_SMPP_HOST", "required with smpp")
    if host is None:
        reader.problems.append("SESAME_SMPP_HOST is required with the smpp SMS provider")
    system_id = reader.matching(
        "SESAME_SMPP_SYSTEM_ID",
        reader.optional("SESAME_SMPP_SYSTEM_ID", "required with smpp") or "",
        _SYSTEM_ID,
        "1 to 15 printable characters",
    )
    password = reader.secret("SESAME_SMPP_PASSWORD")
    if password:
        reader.matching("SESAME_SMPP_PASSWORD", password, _PASSWORD, "1 to 8 printable characters (SMPP 3.4)")
    source = reader.optional("SESAME_SMPP_SOURCE_ADDR", "unset: SESAME_SMS_SENDER")
    if source is None:
        source = read_sender(reader, bank_name)
    else:
        reader.matching(
            "SESAME_SMPP_SOURCE_ADDR", source, _SOURCE, "a sender id (11 letters or digits) or a number"
        )
    numeric = bool(_DIGITS.fullmatch(source))
    return SmppSettings(
        host=host or "",
        port=reader.integer("SESAME_SMPP_PORT", 2775, 1, 65535),
        system_id=system_id,
        password=password,
        system_type=reader.matching(
            "SESAME_SMPP_SYSTEM_TYPE",
            reader.optional("SESAME_SMPP_SYSTEM_TYPE", "empty") or "",
            _SYSTEM_TYPE,
            "at most 12 characters",
        ),
        source=source,
        source_ton=reader.integer(
            "SESAME_SMPP_SOURCE_TON", TON_INTERNATIONAL if numeric else TON_ALPHANUMERIC, 0, 6
        ),
        source_npi=reader.integer("SESAME_SMPP_SOURCE_NPI", NPI_E164 if numeric else NPI_UNKNOWN, 0, 18),
        window=reader.integer("SESAME_SMPP_WINDOW", 10, 1, 100),
        rate=reader.integer("SESAME_SMPP_RATE_PER_SECOND", 10, 1, 1000),
        enquire_link=float(reader.integer("SESAME_SMPP_ENQUIRE_LINK_SECONDS", 30, 1, 300)),
        connect_timeout=float(reader.integer("SESAME_SMPP_CONNECT_TIMEOUT_SECONDS", 5, 1, 60)),
        response_timeout=float(reader.integer("SESAME_SMPP_RESPONSE_TIMEOUT_SECONDS", 5, 1, 60)),
    )

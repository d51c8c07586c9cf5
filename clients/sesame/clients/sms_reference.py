"""The reference each provider sees for a message, and under which its delivery reports come back.

Made from the message's own reference when it has one (the outbox's entry, the same on every attempt),
prefixed with the provider: an attempt at the same provider keeps its reference, so a provider asked
again after failing before it took the message sees the same one, while another provider's reports
never land on this one's (a failure at Kannel never overwrites SMPP's delivery; decision 0030).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Final

from sesame.server.domain.model import SmsMessage

# What the delivery-report route accepts back as a reference (`kannel_dlr`): nothing else is sent.
_SAFE: Final = re.compile(r"[0-9A-Za-z._-]{1,100}")
# An SMSC's message id (decision 0041): SMPP's is a C-octet string of up to 64 octets (hex or decimal in
# practice), the fake SMSC's a UUID. Anything else is no id: not journaled, not kept, no Redis key made of it.
SMSC_ID_PATTERN: Final = r"[0-9A-Za-z._:-]{1,64}"  # also where a receipt's text names its id (smpp_receipts)
_SMSC_ID: Final = re.compile(SMSC_ID_PATTERN)
SMSC_ID_RULE: Final = "1 to 64 of A-Z a-z 0-9 . _ : -"


def smsc_message_id(value: str) -> str:
    """`value` if it is an SMSC message id by the one rule Kannel's reports and SMPP's answers share, else
    "" (an outside audit found a 60 KiB id journaled, ids with spaces, and non-ASCII ones)."""
    return value if _SMSC_ID.fullmatch(value) else ""


def provider_ref(provider: str, message: SmsMessage) -> str:
    """`<provider>-<message reference>`, or `<provider>-<random>` for a message without one."""
    reference = message.reference if _SAFE.fullmatch(message.reference) else uuid.uuid4().hex
    return f"{provider}-{reference}"


def user_message_reference(provider_ref: str) -> int:
    """The 16-bit reference an SMSC sees in each submit_sm of a message (SMPP 3.4 `user_message_reference`,
    the only field of the protocol that carries an ESME's own reference for a message, 2 octets): the
    first two octets of the SHA-256 of our provider reference, so the same on every attempt of the message
    at that provider and read back from the journaled reference alone (decision 0041). Not unique: with
    the destination number and the time it finds the message in an SMSC's records, not alone."""
    return int.from_bytes(hashlib.sha256(provider_ref.encode()).digest()[:2], "big")

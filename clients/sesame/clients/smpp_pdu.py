"""SMPP 3.4 PDUs: the few an ESME in transceiver mode sends and answers, encoded and decoded.

Only what Sésame uses (docs/decisions/0018): bind_transceiver, submit_sm, deliver_sm, enquire_link,
unbind and generic_nack, with their responses. A PDU is a 16-byte header (length, command id, status,
sequence number, big-endian) and a body of C-octet strings, integers and optional TLVs (§3.2, §5.3).
"""

from __future__ import annotations

import asyncio
import math
import struct
from dataclasses import dataclass
from typing import Final

HEADER: Final = struct.Struct(">IIII")
# A deliver_sm carries at most 254 octets of text plus a few TLVs; anything far larger is no PDU of ours.
MAX_PDU: Final = 64 * 1024
RESPONSE: Final = 0x80000000

GENERIC_NACK: Final = 0x80000000
BIND_TRANSCEIVER: Final = 0x00000009
SUBMIT_SM: Final = 0x00000004
DELIVER_SM: Final = 0x00000005
UNBIND: Final = 0x00000006
ENQUIRE_LINK: Final = 0x00000015

ESME_ROK: Final = 0x00
ESME_RINVCMDID: Final = 0x03
ESME_RSYSERR: Final = 0x08
ESME_RX_T_APPN: Final = 0x64  # "temporary application error": the SMSC redelivers the deliver_sm later

INTERFACE_VERSION: Final = 0x34
TLV_RECEIPTED_MESSAGE_ID: Final = 0x001E
TLV_USER_MESSAGE_REFERENCE: Final = 0x0204  # 2 octets, the ESME's reference for the message (§5.3.2.17)
TLV_MESSAGE_STATE: Final = 0x0427


class MalformedPdu(ValueError):
    """Bytes that are not a PDU this codec understands (length out of bounds, truncated body)."""


@dataclass(frozen=True, slots=True)
class Pdu:
    """One PDU: its header fields and its body as bytes."""

    command_id: int
    status: int
    sequence: int
    body: bytes = b""

    def encode(self) -> bytes:
        """The PDU on the wire."""
        return (
            HEADER.pack(HEADER.size + len(self.body), self.command_id, self.status, self.sequence) + self.body
        )

    @property
    def is_response(self) -> bool:
        """True for a *_resp and for generic_nack."""
        return bool(self.command_id & RESPONSE)


async def read_pdu(reader: asyncio.StreamReader) -> Pdu:
    """The next PDU on the stream. MalformedPdu; asyncio.IncompleteReadError at the end of the stream."""
    head = await reader.readexactly(HEADER.size)
    length, command_id, status, sequence = HEADER.unpack(head)
    if not HEADER.size <= length <= MAX_PDU:
        raise MalformedPdu(f"command_length {length} out of bounds")
    return Pdu(command_id, status, sequence, await reader.readexactly(length - HEADER.size))


def cstring(value: str, limit: int) -> bytes:
    """A C-octet string of at most `limit` octets with its NUL. ValueError past the limit."""
    raw = value.encode("ascii")
    if len(raw) >= limit:
        raise ValueError(f"SMPP field longer than {limit - 1} octets")
    return raw + b"\0"


@dataclass(frozen=True, slots=True)
class Bind:
    """What an ESME says in bind_transceiver (§4.1.5)."""

    system_id: str
    password: str
    system_type: str = ""

    def body(self) -> bytes:
        """The bind_transceiver body: no address range (the SMSC routes deliver_sm by system_id)."""
        return (
            cstring(self.system_id, 16)
            + cstring(self.password, 9)
            + cstring(self.system_type, 13)
            + bytes((INTERFACE_VERSION, 0, 0))
            + cstring("", 41)
        )


@dataclass(frozen=True, slots=True)
class Address:
    """An SMPP address: type of number, numbering plan, digits or an alphanumeric sender id."""

    ton: int
    npi: int
    value: str

    def encode(self) -> bytes:
        """TON, NPI and the address as a C-octet string (§5.2.5 - §5.2.8)."""
        return bytes((self.ton, self.npi)) + cstring(self.value, 21)


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """The fields of a submit_sm or deliver_sm that Sésame sets or reads (§4.4.1, §4.6.1)."""

    source: Address
    destination: Address
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes
    service_type: str = ""
    tlvs: tuple[tuple[int, bytes], ...] = ()
    validity: str = ""  # validity_period (§7.1.1): "" the SMSC's default, else e.g. "000000000500000R"

    def body(self) -> bytes:
        """The body: protocol_id, priority, schedule, replace flag and sm_default_msg_id at 0."""
        if len(self.short_message) > 254:
            raise ValueError("short_message longer than 254 octets")
        head = cstring(self.service_type, 6) + self.source.encode() + self.destination.encode()
        fields = bytes((self.esm_class, 0, 0)) + b"\0" + cstring(self.validity, 17)
        fields += bytes((self.registered_delivery, 0))
        fields += bytes((self.data_coding, 0, len(self.short_message)))
        tlvs = b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in self.tlvs)
        return head + fields + self.short_message + tlvs

    def tlv(self, tag: int) -> bytes | None:
        """The value of optional parameter `tag`, or None when absent."""
        return next((value for found, value in self.tlvs if found == tag), None)


class _Cursor:
    """Reads a PDU body field by field; MalformedPdu when it runs out."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    @property
    def rest(self) -> int:
        return len(self._data) - self._at

    def octets(self, count: int) -> bytes:
        if count > self.rest:
            raise MalformedPdu("PDU body truncated")
        taken = self._data[self._at : self._at + count]
        self._at += count
        return taken

    def byte(self) -> int:
        return self.octets(1)[0]

    def cstring(self) -> str:
        end = self._data.find(b"\0", self._at)
        if end < 0:
            raise MalformedPdu("C-octet string without NUL")
        value = self._data[self._at : end]
        self._at = end + 1
        return value.decode("ascii", "replace")

    def address(self) -> Address:
        return Address(self.byte(), self.byte(), self.cstring())


def parse_short_message(body: bytes) -> ShortMessage:
    """A deliver_sm (or submit_sm) body. MalformedPdu."""
    cursor = _Cursor(body)
    service_type = cursor.cstring()
    source, destination = cursor.address(), cursor.address()
    esm_class = cursor.byte()
    cursor.octets(2)  # protocol_id, priority_flag
    cursor.cstring()  # schedule_delivery_time
    cursor.cstring()  # validity_period
    registered_delivery = cursor.byte()
    cursor.byte()  # replace_if_present_flag
    data_coding = cursor.byte()
    cursor.byte()  # sm_default_msg_id
    text = cursor.octets(cursor.byte())
    tlvs: list[tuple[int, bytes]] = []
    while cursor.rest >= 4:
        tag, length = struct.unpack(">HH", cursor.octets(4))
        tlvs.append((tag, cursor.octets(length)))
    if cursor.rest:
        raise MalformedPdu("trailing octets after the TLVs")
    return ShortMessage(
        source, destination, esm_class, registered_delivery, data_coding, text, service_type, tuple(tlvs)
    )


def relative_time(seconds: float) -> str:
    """An SMPP 3.4 relative time (§7.1.1.2, `YYMMDDhhmmss000R`) of `seconds`, rounded up, at least 1 s and
    at most 99 days."""
    whole = min(max(1, math.ceil(seconds)), 99 * 86400 + 86399)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


def parse_message_id(body: bytes) -> str:
    """The message_id of a submit_sm_resp (empty when the SMSC sent none). MalformedPdu."""
    return _Cursor(body).cstring() if body else ""

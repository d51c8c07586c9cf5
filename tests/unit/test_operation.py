"""Canonical encoding of operations: golden bytes per type, round trips, and what changes the digest."""

from __future__ import annotations

import hashlib
import struct

import pytest

from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    MalformedEncoding,
    Money,
    Operation,
    Payee,
    decode,
    digest,
)

PAYEE = Payee("Jean DUPONT", "FR7630006000011234567890189")
TRANSFER = CreditTransfer(Money("EUR", 125000), PAYEE, "tx-42")


def field(tag: int, value: bytes) -> bytes:
    """One TLV field as the spec in operation.py describes it, written independently of the code."""
    return bytes([tag]) + len(value).to_bytes(4, "big") + value


GOLDEN: list[tuple[Operation, bytes]] = [
    (Login(), b"SESAME-OP\x01\x01"),
    (
        TRANSFER,
        b"SESAME-OP\x01\x02"
        + field(1, b"EUR")
        + field(2, (125000).to_bytes(8, "big"))
        + field(3, b"Jean DUPONT")
        + field(4, b"FR7630006000011234567890189")
        + field(5, b"tx-42"),
    ),
    (
        AddBeneficiary(Payee("Zoé Durand", "DE89370400440532013000")),
        b"SESAME-OP\x01\x03" + field(3, "Zoé Durand".encode()) + field(4, b"DE89370400440532013000"),
    ),
    (ChangePhone("+33698765432"), b"SESAME-OP\x01\x04" + field(6, b"+33698765432")),
]


@pytest.mark.parametrize(("operation", "expected"), GOLDEN, ids=lambda v: type(v).__name__)
def test_golden_bytes(operation: Operation, expected: bytes) -> None:
    """Each operation type encodes to exactly the documented bytes."""
    assert operation.encode() == expected
    assert digest(operation) == hashlib.sha256(expected).digest()


@pytest.mark.parametrize(("operation", "encoded"), GOLDEN, ids=lambda v: type(v).__name__)
def test_decode_reverses_encode(operation: Operation, encoded: bytes) -> None:
    """The stored bytes give back the same operation."""
    assert decode(encoded) == operation


@pytest.mark.parametrize(
    "changed",
    [
        CreditTransfer(Money("EUR", 125001), PAYEE, "tx-42"),
        CreditTransfer(Money("USD", 125000), PAYEE, "tx-42"),
        CreditTransfer(Money("EUR", 125000), Payee("Jean DUPOND", PAYEE.iban), "tx-42"),
        CreditTransfer(Money("EUR", 125000), Payee(PAYEE.name, "FR7630006000011234567890190"), "tx-42"),
        CreditTransfer(Money("EUR", 125000), PAYEE, "tx-43"),
    ],
)
def test_any_change_gives_another_digest(changed: CreditTransfer) -> None:
    """Amount, currency, payee name, IBAN and transaction id are all bound (RTS Art. 5(1)(d))."""
    assert digest(changed) != digest(TRANSFER)


def test_field_boundaries_cannot_be_shifted() -> None:
    """Moving characters between adjacent fields changes the bytes (lengths are encoded)."""
    a = AddBeneficiary(Payee("AB", "C"))
    b = AddBeneficiary(Payee("A", "BC"))
    assert a.encode() != b.encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"NOT-AN-OP\x01\x01",
        b"SESAME-OP\x02\x01",
        b"SESAME-OP\x01\x09",
        b"SESAME-OP\x01\x04" + struct.pack(">BI", 6, 50) + b"+33",
        b"SESAME-OP\x01\x04" + field(9, b"x"),
        b"SESAME-OP\x01\x02" + field(1, b"EUR"),
        b"SESAME-OP\x01\x03" + field(4, b"DE89370400440532013000") + field(3, b"Zoe"),
        # A field repeated: not what encode() gives, though its fields, kept once, would be.
        b"SESAME-OP\x01\x04" + field(6, b"+33612345678") + field(6, b"+33612345678"),
    ],
)
def test_decode_refuses_foreign_bytes(data: bytes) -> None:
    """Truncated, unknown, incomplete, reordered or repeated encodings raise MalformedEncoding."""
    with pytest.raises(MalformedEncoding):
        decode(data)

"""OCRA suite parsing, DataInput layout and truncation (RFC 6287, RFC 4226)."""

from __future__ import annotations

import pytest

from sesame.server.domain import ocra
from sesame.server.domain.model import MacAlgorithm


def test_parse_reads_every_part() -> None:
    """A full suite string is split into its algorithm, digits and data inputs."""
    suite = ocra.OcraSuite.parse("OCRA-1:HOTP-SHA512-8:C-QN08-PSHA1-S064-T1M")
    assert suite.algorithm is MacAlgorithm.SHA512
    assert suite.digits == 8
    assert suite.counter
    assert (suite.question_format, suite.question_length) == ("N", 8)
    assert suite.pin_algorithm is MacAlgorithm.SHA1
    assert suite.session_length == 64
    assert suite.time_step == "1M"


@pytest.mark.parametrize(
    "text",
    [
        "OCRA-2:HOTP-SHA1-6:QN08",
        "OCRA-1:HOTP-MD5-6:QN08",
        "OCRA-1:HOTP-SHA1-3:QN08",
        "OCRA-1:HOTP-SHA1-6:C",
        "OCRA-1:HOTP-SHA1-6:QX08",
        "OCRA-1:HOTP-SHA1-6:QN08-PMD5",
        "OCRA-1:HOTP-SHA1-6:QN08-PSHA1-PSHA1",
        "OCRA-1:HOTP-SHA1-6",
    ],
)
def test_parse_refuses_suites_the_rfc_does_not_allow(text: str) -> None:
    """Malformed suites raise InvalidSuite instead of computing something else."""
    with pytest.raises(ocra.InvalidSuite):
        ocra.OcraSuite.parse(text)


def test_data_input_layout_for_a_hex_question() -> None:
    """DataInput is suite, a zero byte, then the question padded to 128 bytes."""
    suite = ocra.OcraSuite.parse("OCRA-1:HOTP-SHA256-6:QH64")
    data = suite.data_input("AB" * 32)
    prefix = b"OCRA-1:HOTP-SHA256-6:QH64\x00"
    assert data == prefix + bytes.fromhex("AB" * 32) + bytes(96)


def test_numeric_question_with_odd_hex_length_is_left_aligned() -> None:
    """22222222 is 0x153158E: the reference code pads the hex digits on the right."""
    data = ocra.OcraSuite.parse("OCRA-1:HOTP-SHA1-6:QN08").data_input("22222222")
    question = data[len("OCRA-1:HOTP-SHA1-6:QN08") + 1 :]
    assert question[:4] == bytes.fromhex("153158E0")
    assert len(question) == 128


def test_missing_required_input_is_refused() -> None:
    """A suite with a counter needs a counter."""
    with pytest.raises(ocra.InvalidSuite):
        ocra.OcraSuite.parse("OCRA-1:HOTP-SHA1-6:C-QN08").data_input("12345678")


def test_pin_hash_of_the_wrong_length_is_refused() -> None:
    """PSHA1 takes exactly 20 bytes."""
    with pytest.raises(ocra.InvalidSuite):
        ocra.OcraSuite.parse("OCRA-1:HOTP-SHA1-6:QN08-PSHA1").data_input("12345678", pin_hash=bytes(32))


def test_question_too_long_for_the_field_is_refused() -> None:
    """A question must fit in 128 bytes."""
    with pytest.raises(ocra.InvalidSuite):
        ocra.OcraSuite.parse("OCRA-1:HOTP-SHA1-6:QA64").data_input("A" * 129)


def test_truncate_matches_rfc4226_section_5_4() -> None:
    """The worked example of RFC 4226 section 5.4 truncates to 872921."""
    mac = bytes.fromhex("1f8698690e02ca16618550ef7f19da8e945b555a")
    assert ocra.truncate(mac, 6) == "872921"


def test_truncate_keeps_leading_zeros() -> None:
    """Codes are fixed-width strings."""
    mac = bytes(19) + b"\x00"  # offset 0, value 0
    assert ocra.truncate(mac, 8) == "00000000"

"""Texts as SMPP short messages: GSM-7 or UCS-2, one part or concatenated parts that rejoin whole."""

from __future__ import annotations

from sesame.clients import smpp_text
from sesame.clients.smpp_text import GSM7, UCS2, UDHI, decode, encode


def _joined(encoded: smpp_text.Encoded) -> str:
    skip = 6 if encoded.esm_class & UDHI else 0
    return "".join(decode(encoded.data_coding, part[skip:]) for part in encoded.parts)


def test_a_gsm7_text_of_160_characters_is_one_part():
    """160 GSM characters fit one SMS: data_coding 0, no UDH."""
    encoded = encode("é" * 160, 1)
    assert (encoded.data_coding, encoded.esm_class, len(encoded.parts)) == (GSM7, 0, 1)


def test_the_extension_table_costs_two_septets_and_is_never_split():
    """A text of 153 septets then '€' (2 septets) splits before the escape, never inside it."""
    encoded = encode("a" * 152 + "€" + "b" * 10, 9)
    assert len(encoded.parts) == 2
    assert encoded.parts[0][6:] == b"a" * 152
    assert encoded.parts[1][6:8] == b"\x1be"
    assert _joined(encoded) == "a" * 152 + "€" + "b" * 10


def test_one_character_off_the_alphabet_makes_the_whole_text_ucs2():
    """A ç (only Ç is in GSM 03.38) sends the text as UCS-2, 70 characters a part at most."""
    encoded = encode("François", 1)
    assert (encoded.data_coding, encoded.parts) == (UCS2, ("François".encode("utf-16-be"),))


def test_a_long_ucs2_text_splits_into_67_character_parts_with_one_reference():
    """200 UCS-2 characters: 3 parts of 67, 67, 66 characters, UDH 05 00 03 ref total seq."""
    encoded = encode("ç" * 200, 0xAB)
    assert [len(part) - 6 for part in encoded.parts] == [134, 134, 132]
    assert [part[:6] for part in encoded.parts] == [bytes((5, 0, 3, 0xAB, 3, seq)) for seq in (1, 2, 3)]
    assert _joined(encoded) == "ç" * 200


def test_a_surrogate_pair_is_never_split():
    """An emoji (two UTF-16 units) at a part boundary moves whole to the next part."""
    text = "ç" * 66 + "😀" + "ç" * 10
    encoded = encode(text, 1)
    assert encoded.parts[0][6:] == ("ç" * 66).encode("utf-16-be")
    assert _joined(encoded) == text

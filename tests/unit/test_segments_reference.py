"""`segments.measure` and `gsm7.fits_gsm7` counted without a width per character (decision 0049) agree with
the per-character rule they replaced, on any text of GSM-7 letters, extension letters and others."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sesame.server.domain import gsm7, segments

LETTERS = st.sampled_from(list("abcXYZ 0123@£Ç\n\r\"'€[]{}^|~\\\fçéж😀\u2019"))


def reference(text: str) -> segments.Segments:
    fits = all(char in gsm7._BASIC or char in gsm7.EXTENSION for char in text)
    if fits:
        encoding = segments.Encoding.GSM7
        widths = [2 if char in gsm7.EXTENSION else 1 for char in text]
    else:
        encoding = segments.Encoding.UCS2
        widths = [len(char.encode("utf-16-le")) // 2 for char in text]
    units, single, part = sum(widths), 160 if fits else 70, 153 if fits else 67
    if units <= single:
        return segments.Segments(encoding, units, 1)
    parts, used = 1, 0
    for width in widths:
        if used + width > part:
            parts, used = parts + 1, 0
        used += width
    return segments.Segments(encoding, units, parts)


@settings(max_examples=400, deadline=None)
@given(st.lists(LETTERS, max_size=420).map("".join))
def test_measure_agrees_with_the_per_character_rule(text: str) -> None:
    expected = reference(text)
    assert gsm7.fits_gsm7(text) is (expected.encoding is segments.Encoding.GSM7)
    assert segments.measure(text) == expected


ONE_UNIT = st.sampled_from(
    list("abcXYZ 0123@£Ç\n\r\"'çéж\u2019")
)  # no extension letter, nothing past the BMP


@settings(max_examples=300, deadline=None)
@given(st.lists(ONE_UNIT, min_size=150, max_size=700).map("".join))
def test_long_texts_of_one_unit_characters_agree_with_the_per_character_rule(text: str) -> None:
    """The parts of a long text whose every character is one unit wide are counted by a division (decision
    0059): the same count as packing the characters one by one, in GSM-7 and in UCS-2."""
    assert segments.measure(text) == reference(text)

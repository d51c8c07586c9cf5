"""Parts and encoding of a text: the count the budget, the metric and docs/sms.md rely on."""

from __future__ import annotations

import pytest

from sesame.clients.smpp_text import encode
from sesame.server.domain.segments import Encoding, Segments, measure


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, Segments(Encoding.GSM7, 160, 1)),
        ("a" * 161, Segments(Encoding.GSM7, 161, 2)),
        ("a" * 306, Segments(Encoding.GSM7, 306, 2)),
        ("a" * 307, Segments(Encoding.GSM7, 307, 3)),
        ("€" * 80, Segments(Encoding.GSM7, 160, 1)),
        ("ç" * 70, Segments(Encoding.UCS2, 70, 1)),
        ("ç" * 71, Segments(Encoding.UCS2, 71, 2)),
        ("\U0001f600" * 35, Segments(Encoding.UCS2, 70, 1)),
    ],
)
def test_boundaries_of_one_and_several_parts(text: str, expected: Segments) -> None:
    """160 septets or 70 UTF-16 units in one SMS; 153 or 67 a part beyond; € and emoji count twice."""
    assert measure(text) == expected


def test_an_escape_is_never_split_across_parts() -> None:
    """152 letters then a euro sign: the euro goes whole into the second part."""
    assert measure("a" * 152 + "€" + "a" * 152).parts == 3


@pytest.mark.parametrize(
    "text", ["a" * 400, "a" * 152 + "€" * 80, "ç" * 200, "é" * 134 + "ç", "x" * 66 + "\U0001f600" * 40]
)
def test_the_count_is_what_the_smpp_adapter_submits(text: str) -> None:
    """The parts counted are the parts the SMPP adapter splits the text into."""
    assert measure(text).parts == len(encode(text, 1).parts)

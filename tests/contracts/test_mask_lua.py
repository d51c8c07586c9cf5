"""The phone mask in Lua (`_mask.lua`, which the scripts journal and dead-letter numbers with) shows what
`privacy.mask_phone` shows, for every calling code libphonenumber knows and every length down to none."""

from __future__ import annotations

from importlib import resources

import phonenumbers
import pytest
import redis

from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.domain.privacy import mask_phone

pytestmark = pytest.mark.integration

_BODY = """
local shown = {}
for i = 1, #ARGV do shown[i] = mask_phone(ARGV[i]) end
return shown
"""


def _numbers() -> list[str]:
    """`+<code>` and a subscriber number cut at every length, for each calling code; and odd strings."""
    digits = "612345678901234"
    numbers = ["", "+", "33612345678", "+33 612 345 678"]
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        numbers += [f"+{code}{digits[:n]}" for n in range(15 - len(str(code)) + 1)]
    return numbers


def test_lua_masks_every_number_as_python_does(redis_server: EmbeddedRedis) -> None:
    """Each number masked by the Lua piece is, character for character, what mask_phone gives."""
    piece = resources.files("sesame.clients").joinpath("lua", "_mask.lua").read_text(encoding="utf-8")
    numbers = _numbers()
    client = redis.Redis.from_url(redis_server.url)
    try:
        shown = client.eval(piece + _BODY, 0, *numbers)
    finally:
        client.close()
    assert [value.decode() for value in shown] == [mask_phone(number) for number in numbers]

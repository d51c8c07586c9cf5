"""The proof keys' public halves read at most once a period (an outside audit, AU2), over the fake key store.

Every GetProof of a kept proof checks it under these halves, and GetProofKeys publishes them: read from the
token on every call, a flood of either held the HSM's lock that Start and Verify wait on.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from sesame.server.domain.errors import HsmUnavailable
from sesame.server.domain.model import PublicKey
from sesame.server.domain.published_keys import PublishedKeys
from tests.fakes.keystore import FakeKeyStore

PERIOD = 0.2  # seconds: short, so that the tests wait for it for real


class CountedKeyStore(FakeKeyStore):
    """The fake key store, counting its searches for public halves; `down` makes them fail."""

    def __init__(self) -> None:
        super().__init__()
        self.searches = 0
        self.down = False
        self.gate: asyncio.Event | None = None  # when set: a search waits for it, holding what it found

    async def public_keys(self) -> list[PublicKey]:
        self.searches += 1
        found = await super().public_keys()  # what the token holds as the search starts
        await asyncio.sleep(0)  # another caller may come in while the search runs
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise HsmUnavailable("the token is gone")
        return found


def _published() -> tuple[CountedKeyStore, PublishedKeys]:
    keys = CountedKeyStore()
    keys.add_proof_key(1)
    return keys, PublishedKeys(keys, every=PERIOD)


async def test_callers_within_a_period_share_one_search() -> None:
    keys, published = _published()
    found = await asyncio.gather(*(published.key("sesame-proof-v1") for _ in range(50)), published.all())
    assert keys.searches <= 2  # the first caller's, and one for every caller that asked while it ran
    assert {key.kid for key in found[:-1] if key is not None} == {"sesame-proof-v1"}
    assert [key.kid for key in found[-1]] == ["sesame-proof-v1"]  # type: ignore[union-attr]
    searches = keys.searches
    for _ in range(20):
        await published.all()
    assert keys.searches == searches


async def test_the_halves_are_searched_again_once_the_period_passed() -> None:
    keys, published = _published()
    await published.all()
    del keys.proof_keys["sesame-proof-v1"]  # a key taken out of the token: no longer published
    keys.add_proof_key(2)
    await asyncio.sleep(PERIOD)
    assert await published.key("sesame-proof-v1") is None
    assert [key.kid for key in await published.all()] == ["sesame-proof-v2"]
    assert keys.searches == 2


async def test_a_kid_not_held_costs_at_most_one_search_a_period() -> None:
    """A forged kid waits for the rest of the period, then one search answers every caller waiting."""
    keys, published = _published()
    await published.all()
    started = time.monotonic()
    found = await asyncio.gather(*(published.key("sesame-proof-v9") for _ in range(30)))
    assert found == [None] * 30
    assert keys.searches <= 3
    while time.monotonic() - started < 3 * PERIOD:
        assert await published.key("sesame-proof-v9") is None
    assert keys.searches <= 3 + (time.monotonic() - started) / PERIOD + 1


async def test_a_key_made_since_the_last_search_is_found_within_a_period() -> None:
    """A rotation (another worker's, or this one's): its new key is looked for again, not refused for good;
    and the set published always holds the key this process signs with."""
    keys, published = _published()
    await published.all()
    keys.add_proof_key(2)
    started = time.monotonic()
    assert [key.kid for key in await published.all()] == ["sesame-proof-v1", "sesame-proof-v2"]
    assert time.monotonic() - started < PERIOD + 0.1
    keys.add_proof_key(3)
    found = await published.key("sesame-proof-v3")
    assert found is not None
    assert found.kid == "sesame-proof-v3"


async def test_a_failed_search_is_not_remembered() -> None:
    keys, published = _published()
    keys.down = True
    with pytest.raises(HsmUnavailable):
        await published.all()
    keys.down = False
    assert [key.kid for key in await published.all()] == ["sesame-proof-v1"]
    assert keys.searches == 2


async def test_a_read_that_started_before_a_key_was_made_does_not_answer_a_caller_looking_for_it() -> None:
    """Found from outside (AV5): a caller looking for a kid not held waited for the read in flight and took
    it, though that read started before the key was made (a rotation taken up by another worker, whose proof
    this caller checks): the proof was refused INTERNAL. Only a read that started after the caller asked
    answers it."""
    keys, published = _published()
    await published.all()
    await asyncio.sleep(PERIOD)  # stale: the next call reads again
    keys.gate = asyncio.Event()
    in_flight = asyncio.create_task(published.all())
    await asyncio.sleep(0.01)  # its search has started, and found v1 alone
    keys.add_proof_key(2)
    looking = asyncio.create_task(published.key("sesame-proof-v2"))
    await asyncio.sleep(0.01)
    keys.gate.set()
    await in_flight
    found = await looking
    assert found is not None
    assert found.kid == "sesame-proof-v2"

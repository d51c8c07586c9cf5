"""The proof keys' public halves, read from the key store at most once a second (an outside audit, AU2).

GetProof checks every proof it reads from Redis under the key its kid names (decision 0167 point 5), and
GetProofKeys publishes the same halves. Read from the token on every call, each was one search of the HSM
under the lock that Start's MAC and Verify's signature wait on: a flood of GetProof took Verify's p50 from
5 ms to 400 ms. The halves are kept for a second; one caller reads them again while the others wait for that
read (single flight). A kid not held, or a set without the key this process signs with (a rotation), is
looked for again once the second since the last read has passed: a rotated key is found within a second, and
a forged kid costs no more than one search a second.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from sesame.server.domain.errors import HsmUnavailable, KeyNotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from sesame.server.domain.model import PublicKey
    from sesame.server.domain.ports import KeyStore

READ_EVERY_SECONDS = 1.0


class PublishedKeys:
    """Every proof key's public half the key store holds, as read at most `every` seconds ago."""

    def __init__(
        self,
        keys: KeyStore,
        *,
        every: float = READ_EVERY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._every = every
        self._monotonic = monotonic
        self._held: tuple[PublicKey, ...] = ()
        self._read_at: float | None = None  # when the read that gave `_held` started
        self._reading = asyncio.Lock()

    async def all(self) -> list[PublicKey]:
        """Every public half held, oldest first, with the key new proofs are signed with. HsmUnavailable."""
        if self._stale() or not self._holds(await self._signing_kid()):
            await self._read(wait=not self._stale())
        return list(self._held)

    async def key(self, kid: str) -> PublicKey | None:
        """The public half named `kid`, None when the key store holds none by that name. HsmUnavailable."""
        if self._stale() or not self._holds(kid):
            await self._read(wait=not self._stale())
        return next((key for key in self._held if key.kid == kid), None)

    def _stale(self) -> bool:
        return self._read_at is None or self._monotonic() - self._read_at >= self._every

    def _holds(self, kid: str | None) -> bool:
        return kid is None or any(key.kid == kid for key in self._held)

    async def _signing_kid(self) -> str | None:
        try:
            return (await self._keys.current_proof_key()).label
        except (HsmUnavailable, KeyNotFound):
            return None  # no key signs now: nothing to add to what is held

    async def _read(self, *, wait: bool) -> None:
        """Read the halves again, unless a read that started after this caller asked has ended meanwhile (one
        read for every caller that waited for it); `wait`: the last read is under a period old, so this one
        waits for the rest of that period first. A read that started before the caller asked may not hold
        the key it looks for (made on the token since: an outside audit, AV5)."""
        asked_at = self._monotonic()
        async with self._reading:
            if self._read_at is not None and self._read_at >= asked_at:
                return
            if wait and self._read_at is not None:
                await asyncio.sleep(max(0.0, self._read_at + self._every - self._monotonic()))
            started = self._monotonic()
            self._held = tuple(await self._keys.public_keys())
            self._read_at = started

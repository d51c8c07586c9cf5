"""`CamaraSimSwap`: the SimSwapCheck port on a mobile operator's CAMARA SIM Swap API (docs/risk.md).

Two operations of that API, both `POST` with a JSON body and a bearer token (two-legged: the phone number
is in the body):
- `retrieve-date` (operationId retrieveSimSwapDate): `{"phoneNumber"}` -> `{"latestSimChange": RFC 3339 or
  null, "monitoredPeriod"?: days}`; null means no change within what the operator monitors;
- `check` (operationId checkSimSwap): `{"phoneNumber", "maxAge": hours, 1..2400}` -> `{"swapped": bool}`.
`retrieve-date` is asked first (it gives the date, which the rules may compare); an operator that does not
offer it (404, 405, 501) is asked `check` with the window. Every answer is cached per number for a short
while; a failure is never cached and never read as "not swapped": it raises SimSwapUnavailable, which the
risk flow records as the `unavailable` signal. The number and the token never reach a log or an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import httpx

from sesame.server.domain.errors import SimSwapUnavailable
from sesame.server.domain.ports import Clock, SimSwapCheck
from sesame.server.domain.risk_signals import SimSwapStatus

_log = logging.getLogger("sesame.risk")
_NOT_OFFERED: Final = frozenset({404, 405, 501})
MAX_AGE_LIMIT: Final = 2400  # hours, the API's bound on maxAge


@dataclass(frozen=True, slots=True)
class CamaraConfig:
    """Where the operator's API is and how Sésame asks it; the token never shows in a repr."""

    url: str  # the API's base, e.g. https://api.operator.example/sim-swap/v2
    token: str = field(repr=False)
    timeout: float = 0.5  # seconds for a whole answer: a StartChallenge waits for it
    max_age: timedelta = timedelta(hours=72)  # the window a change counts as recent in
    cache_for: timedelta = timedelta(minutes=5)
    cache_size: int = 10_000


class CamaraSimSwap:
    """The operator's answer per number, cached; SimSwapUnavailable when it cannot be had in time."""

    def __init__(self, config: CamaraConfig, clock: Clock, client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._clock = clock
        self._client = client or httpx.AsyncClient(timeout=config.timeout)
        self._cache: dict[str, tuple[datetime, SimSwapStatus]] = {}

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def status(self, phone: str, *, fresh: bool = False) -> SimSwapStatus:
        """Whether the SIM of `phone` changed within the window (cached, unless `fresh`: asked now, the
        answer kept for the next). SimSwapUnavailable."""
        key = hashlib.sha256(phone.encode()).hexdigest()
        now = self._clock.now()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now and not fresh:
            return cached[1]
        try:
            async with asyncio.timeout(self._config.timeout):
                found = await self._ask(phone, now)
        except TimeoutError:
            raise SimSwapUnavailable("the operator did not answer in time") from None
        except httpx.HTTPError as exc:
            raise SimSwapUnavailable(f"the operator's API failed: {type(exc).__name__}") from None
        if len(self._cache) >= self._config.cache_size:
            self._cache.pop(next(iter(self._cache)))  # the oldest entry: dicts keep insertion order
        self._cache[key] = (now + self._config.cache_for, found)
        return found

    async def _ask(self, phone: str, now: datetime) -> SimSwapStatus:
        answer = await self._post("retrieve-date", {"phoneNumber": phone})
        if answer.status_code in _NOT_OFFERED:
            hours = max(1, min(MAX_AGE_LIMIT, round(self._config.max_age / timedelta(hours=1))))
            checked = _json(await self._post("check", {"phoneNumber": phone, "maxAge": hours}))
            swapped = checked.get("swapped")
            if not isinstance(swapped, bool):
                raise SimSwapUnavailable("the operator's check answer has no swapped flag")
            return SimSwapStatus("swapped" if swapped else "not_swapped")
        latest = _json(answer).get("latestSimChange", ...)
        if latest is None:
            return SimSwapStatus("not_swapped")  # nothing within what the operator monitors
        if not isinstance(latest, str):
            raise SimSwapUnavailable("the operator's answer has no latestSimChange")
        try:
            changed = datetime.fromisoformat(latest)
        except ValueError:
            raise SimSwapUnavailable("the operator's latestSimChange is not a date") from None
        if changed.tzinfo is None:
            raise SimSwapUnavailable("the operator's latestSimChange has no time zone")
        recent = now - changed < self._config.max_age
        return SimSwapStatus("swapped" if recent else "not_swapped", changed)

    async def _post(self, operation: str, body: dict[str, Any]) -> httpx.Response:
        url = f"{self._config.url.rstrip('/')}/{operation}"
        headers = {"Authorization": f"Bearer {self._config.token}"}
        return await self._client.post(url, json=body, headers=headers)


def _json(answer: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 200 answer; SimSwapUnavailable for anything else (never 'not swapped')."""
    if answer.status_code != 200:
        raise SimSwapUnavailable(f"the operator answered HTTP {answer.status_code}")
    try:
        body = answer.json()
    except ValueError:
        raise SimSwapUnavailable("the operator's answer is not JSON") from None
    if not isinstance(body, dict):
        raise SimSwapUnavailable("the operator's answer is not a JSON object")
    return body


_: type[SimSwapCheck] = CamaraSimSwap

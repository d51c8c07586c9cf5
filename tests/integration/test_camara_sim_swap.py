"""The CAMARA SIM Swap client against a local operator implementing that API's contract (docs/risk.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.camara_sim_swap import CamaraConfig, CamaraSimSwap
from sesame.server.domain.errors import SimSwapUnavailable
from tests.fakes.clock import ShiftedClock
from tests.support.camara_sim_swap import TOKEN, Operator, camara_operator

pytestmark = pytest.mark.integration
PHONE = "+33612345678"


@pytest.fixture(name="operator")
def _operator() -> Iterator[Operator]:
    with camara_operator() as operator:
        yield operator


@pytest.fixture(name="clock")
def _clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture(name="client")
async def _client(operator: Operator, clock: ShiftedClock) -> AsyncIterator[CamaraSimSwap]:
    client = CamaraSimSwap(CamaraConfig(operator.url, TOKEN, timeout=0.5), clock)
    yield client
    await client.close()


async def test_a_change_within_the_window_is_swapped_with_its_date(
    operator: Operator, client: CamaraSimSwap
) -> None:
    """retrieve-date says 5 hours ago: swapped, at that instant."""
    changed = (datetime.now(UTC) - timedelta(hours=5)).replace(microsecond=0)
    operator.changes[PHONE] = changed
    status = await client.status(PHONE)
    assert (status.state, status.swapped_at) == ("swapped", changed)
    assert operator.calls == [("retrieve-date", {"phoneNumber": PHONE})]


async def test_an_old_change_is_not_swapped(operator: Operator, client: CamaraSimSwap) -> None:
    """A change 30 days ago is outside the 72 h window."""
    operator.changes[PHONE] = datetime.now(UTC) - timedelta(days=30)
    assert (await client.status(PHONE)).state == "not_swapped"


async def test_no_change_monitored_is_not_swapped(operator: Operator, client: CamaraSimSwap) -> None:
    """latestSimChange null: nothing within what the operator monitors."""
    operator.changes[PHONE] = None
    status = await client.status(PHONE)
    assert (status.state, status.swapped_at) == ("not_swapped", None)


async def test_without_retrieve_date_the_check_is_asked_with_the_window(
    operator: Operator, client: CamaraSimSwap
) -> None:
    """An operator offering only checkSimSwap is asked with maxAge 72."""
    operator.offers_retrieve_date = False
    operator.changes[PHONE] = datetime.now(UTC) - timedelta(hours=1)
    assert (await client.status(PHONE)).state == "swapped"
    assert operator.calls[-1] == ("check", {"phoneNumber": PHONE, "maxAge": 72})


async def test_answers_are_cached_for_a_while(
    operator: Operator, client: CamaraSimSwap, clock: ShiftedClock
) -> None:
    """The second ask within the cache time costs no call; after it, the operator is asked again."""
    operator.changes[PHONE] = None
    await client.status(PHONE)
    await client.status(PHONE)
    assert len(operator.calls) == 1
    clock.advance(timedelta(minutes=6))
    await client.status(PHONE)
    assert len(operator.calls) == 2


async def test_a_slow_operator_is_unavailable_never_not_swapped(
    operator: Operator, client: CamaraSimSwap
) -> None:
    """Past the timeout: SimSwapUnavailable, and the failure is not cached."""
    operator.changes[PHONE] = None
    operator.delay = 1.0
    with pytest.raises(SimSwapUnavailable, match="in time"):
        await client.status(PHONE)
    operator.delay = 0.0
    assert (await client.status(PHONE)).state == "not_swapped"


async def test_a_refused_token_is_unavailable(operator: Operator, clock: ShiftedClock) -> None:
    """401: unavailable, and neither the number nor the token is in the error."""
    client = CamaraSimSwap(CamaraConfig(operator.url, "wrong-token"), clock)
    operator.changes[PHONE] = None
    with pytest.raises(SimSwapUnavailable) as caught:
        await client.status(PHONE)
    await client.close()
    assert "401" in str(caught.value)
    assert PHONE not in str(caught.value)
    assert "wrong-token" not in str(caught.value)


async def test_an_unknown_number_is_unavailable(client: CamaraSimSwap) -> None:
    """404 for the number: the operator said nothing, which is not 'not swapped'."""
    with pytest.raises(SimSwapUnavailable, match="404"):
        await client.status("+33699999999")


async def test_an_operator_that_is_down_is_unavailable(clock: ShiftedClock) -> None:
    """Nobody listening: unavailable."""
    with camara_operator() as gone:
        url = gone.url
    client = CamaraSimSwap(CamaraConfig(url, TOKEN), clock)
    with pytest.raises(SimSwapUnavailable):
        await client.status(PHONE)
    await client.close()

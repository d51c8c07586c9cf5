"""Pytest plugin: one real Kannel per test session, and a delivery-report listener per test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from sesame.clients.http_listener import HttpListener
from sesame.clients.kannel_dlr import DLR_PATH, KannelDeliveryReports
from sesame.clients.redis_store import RedisState
from sesame.clients.sms_kannel import DlrCallback
from tests.fakes.clock import ShiftedClock
from tests.support.kannel import Kannel, running_kannel


@pytest.fixture(scope="session")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kannel]:
    """Kannel on free loopback ports, its configuration and logs in the session's temporary directory."""
    with running_kannel(tmp_path_factory.mktemp("kannel")) as running:
        yield running


@dataclass(frozen=True)
class DlrReceiver:
    """A listening delivery-report route over the real store, and the callback that leads to it."""

    listener: HttpListener
    callback: DlrCallback

    @property
    def url(self) -> str:
        """The route's URL, without a query."""
        return f"{self.callback.base_url}{DLR_PATH}"


@pytest.fixture
async def dlr_receiver(redis_store: RedisState) -> AsyncIterator[DlrReceiver]:
    """Kannel's delivery reports received on 127.0.0.1 and recorded in the test's Redis."""
    token = secrets.token_urlsafe(32)
    listener = HttpListener(
        DLR_PATH, KannelDeliveryReports(token, redis_store.challenges, ShiftedClock()).receive
    )
    await listener.start("127.0.0.1:0")
    try:
        yield DlrReceiver(listener, DlrCallback(f"http://127.0.0.1:{listener.port}", token))
    finally:
        await listener.close()

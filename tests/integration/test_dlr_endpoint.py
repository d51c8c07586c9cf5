"""The delivery-report endpoint over real HTTP and Redis: the token gates every write, the status says why."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import pytest

from sesame.clients import http_listener
from sesame.clients.redis_store import RedisState
from sesame.server.domain.model import Challenge, DeliveryState, RequestContext
from tests import factories
from tests.support.kannel_fixtures import DlrReceiver

pytestmark = pytest.mark.integration


async def _opened(store: RedisState) -> Challenge:
    challenge = factories.a_challenge(datetime.now(UTC).replace(microsecond=0))
    await store.challenges.open_challenge(
        await factories.its_user_enrolled(store, challenge), RequestContext()
    )
    return challenge


async def _get(receiver: DlrReceiver, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(receiver.url, params=params)


def _report(receiver: DlrReceiver, challenge_id: str, status: str = "1") -> dict[str, str]:
    token = receiver.callback.token_for(challenge_id, "ref-1")
    return {"challenge": challenge_id, "ref": "ref-1", "status": status, "token": token}


async def test_a_report_with_the_token_is_recorded(redis_store: RedisState, dlr_receiver: DlrReceiver):
    """Status 1 with the right token answers 200 and the challenge reads DELIVERED."""
    challenge = await _opened(redis_store)
    response = await _get(dlr_receiver, **_report(dlr_receiver, challenge.challenge_id))
    assert response.status_code == 200
    assert (
        await redis_store.challenges.get_challenge(challenge.challenge_id)
    ).delivery is DeliveryState.DELIVERED


@pytest.mark.parametrize("token", ["wrong-token", "", None])
async def test_a_bad_or_missing_token_is_refused_and_nothing_written(
    redis_store: RedisState, dlr_receiver: DlrReceiver, token: str | None
):
    """A wrong, empty or absent token answers 403; the challenge and its journal are untouched."""
    challenge = await _opened(redis_store)
    report = _report(dlr_receiver, challenge.challenge_id)
    del report["token"]
    if token is not None:
        report["token"] = token
    assert (await _get(dlr_receiver, **report)).status_code == 403
    assert (
        await redis_store.challenges.get_challenge(challenge.challenge_id)
    ).delivery is DeliveryState.PENDING
    assert [e["event"] for e in await redis_store.journal.challenge_journal(challenge.challenge_id)] == [
        "challenge.opened"
    ]


async def test_a_report_for_an_unknown_challenge_is_404(dlr_receiver: DlrReceiver):
    """A challenge never opened (or already purged) answers 404."""
    assert (await _get(dlr_receiver, **_report(dlr_receiver, "ffff.k1.d6"))).status_code == 404


@pytest.mark.parametrize("status", ["abc", "32", "0", "-1", "", "999", "33"])
async def test_a_status_kannel_never_sends_is_400(
    redis_store: RedisState, dlr_receiver: DlrReceiver, status: str
):
    """A status with no known DLR bit, or one Kannel never sets beside a known one (999 was recorded as
    delivered: an outside audit's), or not a number, answers 400 and writes nothing."""
    challenge = await _opened(redis_store)
    assert (
        await _get(dlr_receiver, **_report(dlr_receiver, challenge.challenge_id, status))
    ).status_code == 400
    assert (
        await redis_store.challenges.get_challenge(challenge.challenge_id)
    ).delivery is DeliveryState.PENDING


async def test_a_report_without_its_reference_is_400(dlr_receiver: DlrReceiver):
    """Every field must be there once: no ref is 400."""
    report = _report(dlr_receiver, "ffff.k1.d6")
    del report["ref"]
    assert (await _get(dlr_receiver, **report)).status_code == 400


async def test_other_paths_and_methods_are_refused(dlr_receiver: DlrReceiver):
    """Another path answers 404, a POST to the route 405."""
    base = dlr_receiver.callback.base_url
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{base}/metrics")).status_code == 404
        assert (await client.post(dlr_receiver.url, content=b"x")).status_code == 405


async def _raw(receiver: DlrReceiver, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", receiver.listener.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_an_oversized_request_head_is_refused(redis_store: RedisState, dlr_receiver: DlrReceiver):
    """A request line beyond HEAD_LIMIT, though it holds a valid report, answers 400 and is not recorded."""
    challenge = await _opened(redis_store)
    query = (
        urlencode(_report(dlr_receiver, challenge.challenge_id)) + "&pad=" + "a" * http_listener.HEAD_LIMIT
    )
    answer = await _raw(dlr_receiver, f"GET /dlr/kannel?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.split(b" ", 2)[1] == b"400"
    assert (
        await redis_store.challenges.get_challenge(challenge.challenge_id)
    ).delivery is DeliveryState.PENDING


async def test_an_oversized_header_field_is_refused(dlr_receiver: DlrReceiver):
    """One header field beyond HEAD_LIMIT answers 400 without reaching the route."""
    head = (
        b"GET /dlr/kannel?a=1 HTTP/1.1\r\nHost: x\r\nX-Pad: "
        + b"a" * (http_listener.HEAD_LIMIT + 1)
        + b"\r\n\r\n"
    )
    assert (await _raw(dlr_receiver, head)).split(b" ", 2)[1] == b"400"


@pytest.mark.parametrize("sent", [b"", b"GET /dlr/kannel?challenge=x HTTP/1.1\r\nHost: x\r\n"])
async def test_a_silent_or_slow_client_is_dropped(sent: bytes):
    """A client that sends nothing, or never ends its head, is disconnected once the head timeout passed."""
    listener = http_listener.HttpListener("/dlr/kannel", _never_called, head_timeout=0.3)
    await listener.start("127.0.0.1:0")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(sent)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
    finally:
        await listener.close()


async def _never_called(query: str) -> http_listener.Reply:
    raise AssertionError("the route must not be reached")


async def test_the_token_reaches_no_log_line(
    redis_store: RedisState, dlr_receiver: DlrReceiver, caplog: pytest.LogCaptureFixture
):
    """At DEBUG, neither a good report, a refused one nor an oversized one logs the token (the test's
    own HTTP client, httpx, does: its lines are not the server's)."""
    caplog.set_level(logging.DEBUG)
    challenge = await _opened(redis_store)
    report = _report(dlr_receiver, challenge.challenge_id)
    await _get(dlr_receiver, **report)
    await _get(dlr_receiver, **(report | {"status": "abc"}))
    await _raw(dlr_receiver, f"GET /dlr/kannel?{urlencode(report)}&p={'a' * 9000} HTTP/1.1\r\n\r\n".encode())
    tokens = (dlr_receiver.callback.token, report["token"])  # the secret, and the URL's token
    server = [r for r in caplog.records if r.name.startswith(("sesame", "aiohttp", "asyncio"))]
    assert len(server) >= 3
    assert not [r for r in server if any(token in r.getMessage() for token in tokens)]

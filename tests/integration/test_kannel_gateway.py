"""The Kannel gateway on a real Kannel: the text arrives intact, reports come back, failures stay quiet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime

import pytest

from sesame.clients.redis_store import RedisState
from sesame.clients.sms_failover import FailoverSmsGateway, Provider, Reliability
from sesame.clients.sms_kannel import ANSWER_LIMIT, KannelConfig, KannelSmsGateway, refusal
from sesame.server.domain import sms_text
from sesame.server.domain.errors import DeliveryFailed
from sesame.server.domain.model import Challenge, DeliveryState, RequestContext, SmsMessage
from sesame.server.domain.operation import CreditTransfer, Login, Money, Operation, Payee
from tests import factories
from tests.fakes.clock import ShiftedClock
from tests.support.kannel import Kannel
from tests.support.kannel_fixtures import DlrReceiver
from tests.support.ports import dead_port

pytestmark = pytest.mark.integration

PHONE = "+33612345678"
CODE = "482913"

Gateways = Callable[..., KannelSmsGateway]


@pytest.fixture
async def gateways(kannel: Kannel) -> AsyncIterator[Gateways]:
    """Make gateways on the session's Kannel (any setting may be changed), closed after the test."""
    made: list[KannelSmsGateway] = []

    def make(**changes: object) -> KannelSmsGateway:
        settings: dict[str, object] = {
            "url": kannel.url,
            "username": kannel.username,
            "password": kannel.password,
            "sender": "MaBanque",
            "timeout": 5.0,
        } | changes
        made.append(KannelSmsGateway(KannelConfig(**settings), ShiftedClock()))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for gateway in made:
        await gateway.close()


def _text(words: str) -> str:
    """A short message with the code, a unique marker to find it at the fake SMSC, and `words`."""
    return f"MaBanque: code {CODE} {uuid.uuid4().hex[:8]} {words}"


def _letters_marker() -> str:
    """A unique marker of letters only: the SMS prints a payee name without digits."""
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])


def _rendered(operation: Operation) -> str:
    """The SMS a user gets for `operation`, as the flows render it (about 260 characters: 2+ parts)."""
    return sms_text.render(operation, sms_text.SmsContext("MaBanque", CODE, 5, "fr"))


async def test_french_text_outside_gsm7_arrives_whole_and_intact_as_ucs2(kannel: Kannel, gateways: Gateways):
    """A text with ç (not GSM-7: an operator template may hold one) reaches the SMSC as UCS-2, in parts."""
    payee = f"François Müller {_letters_marker()}"
    text = _text(f'pour AJOUTER le bénéficiaire "{payee}" (IBAN FR76...0189). Ce code n\'annule jamais rien.')
    await gateways().send(SmsMessage(PHONE, text, "c1"))
    got = await asyncio.to_thread(kannel.wait_for_message, payee)
    assert (got.coding, got.text, got.sender, got.receiver) == ("ucs-2", text, "MaBanque", PHONE)
    assert got.parts > 1


async def test_gsm7_text_with_accents_keeps_the_default_coding(kannel: Kannel, gateways: Gateways):
    """A text whose accents are all in GSM-7 (é è à ù) goes in the default coding, intact."""
    payee = f"Zoé Durand {_letters_marker()}"
    text = _rendered(CreditTransfer(Money("EUR", 125000), Payee(payee, "FR7630006000011234567890189"), "t"))
    await gateways().send(SmsMessage(PHONE, text, "c1"))
    got = await asyncio.to_thread(kannel.wait_for_message, payee)
    assert (got.coding, got.text) == ("text", text)


async def _opened(store: RedisState) -> Challenge:
    challenge = factories.a_challenge(datetime.now(UTC).replace(microsecond=0), Login())
    await store.challenges.open_challenge(
        await factories.its_user_enrolled(store, challenge), RequestContext()
    )
    return challenge


async def _eventually(check: Callable[[], Awaitable[bool]], limit: float = 5.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_delivery_report_reaches_redis_as_delivered(
    redis_store: RedisState, dlr_receiver: DlrReceiver, gateways: Gateways
):
    """Kannel calls the dlr-url back (8 then 1) and the challenge ends DELIVERED, each report journaled."""
    challenge = await _opened(redis_store)
    gateway = gateways(dlr=dlr_receiver.callback)
    sent = await gateway.send(SmsMessage(PHONE, _text("é"), challenge.challenge_id))
    await redis_store.challenges.record_delivery(
        challenge.challenge_id, DeliveryState.SENT, sent.provider_ref, sent.sent_at
    )

    async def delivered() -> bool:
        stored = await redis_store.challenges.get_challenge(challenge.challenge_id)
        return stored.delivery is DeliveryState.DELIVERED

    assert await _eventually(delivered)
    journal = await redis_store.journal.challenge_journal(challenge.challenge_id)
    reports = {(e["outcome"], e["provider_ref"]) for e in journal if e["event"] == "challenge.delivery"}
    assert ("delivered", sent.provider_ref) in reports


async def test_kannel_down_fails_quickly(gateways: Gateways):
    """With nothing listening (connection refused), send raises DeliveryFailed at once."""
    started = time.monotonic()
    with dead_port() as port, pytest.raises(DeliveryFailed):
        await gateways(url=f"http://127.0.0.1:{port}").send(SmsMessage(PHONE, _text(""), "c1"))
    assert time.monotonic() - started < 1.0


async def test_a_wrong_password_fails(gateways: Gateways):
    """Kannel refuses the account (HTTP 403): DeliveryFailed."""
    with pytest.raises(DeliveryFailed):
        await gateways(password=secrets.token_hex(8)).send(SmsMessage(PHONE, _text(""), "c1"))


@pytest.mark.parametrize("failure", ["down", "wrong password"])
async def test_failures_show_neither_the_password_nor_the_code(
    gateways: Gateways, kannel: Kannel, caplog: pytest.LogCaptureFixture, failure: str
):
    """The exception (message, repr, traceback) and the log records hold neither the password nor the code."""
    caplog.set_level(logging.DEBUG)
    password = secrets.token_hex(16)
    with dead_port() as port:
        url = f"http://127.0.0.1:{port}" if failure == "down" else kannel.url
        with pytest.raises(DeliveryFailed) as caught:
            await gateways(url=url, password=password).send(SmsMessage(PHONE, _text(""), "c1"))
    shown = [str(caught.value), repr(caught.value), *traceback.format_exception(caught.value)]
    shown += [record.getMessage() for record in caplog.records]
    assert not [line for line in shown if password in line or CODE in line]


async def test_a_successful_send_logs_neither_the_password_nor_the_code(
    gateways: Gateways, kannel: Kannel, caplog: pytest.LogCaptureFixture
):
    """Even at DEBUG, no log record of a send (ours, httpx's, httpcore's) holds the password or the code."""
    caplog.set_level(logging.DEBUG)
    await gateways().send(SmsMessage(PHONE, _text(""), "c1"))
    messages = [record.getMessage() for record in caplog.records]
    assert messages
    assert not [m for m in messages if kannel.password in m or CODE in m]


async def _serve(answer: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> asyncio.Server:
    """A loopback HTTP server that reads the request head, then runs `answer`."""

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await answer(writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(connected, "127.0.0.1", 0)


async def test_a_silent_gateway_times_out(gateways: Gateways):
    """A server that takes the request and never answers gives DeliveryFailed once the timeout is spent."""

    async def silent(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async with await _serve(silent) as server:
        port = server.sockets[0].getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DeliveryFailed):
            await gateways(url=f"http://127.0.0.1:{port}", timeout=0.5).send(
                SmsMessage(PHONE, _text(""), "c1")
            )
        assert time.monotonic() - started < 2.0


@contextlib.contextmanager
def _unanswered_port() -> Iterator[int]:
    """A loopback port whose connections never complete, as a host that drops packets: a listener that
    never accepts, its queue full (the kernel then drops the SYNs that come)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = [socket.socket() for _ in range(4)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(address)
            yield address[1]
        finally:
            for filler in fillers:
                filler.close()


async def test_a_connection_that_never_completes_is_unreachable(gateways: Gateways):
    """Found from outside: the time ran out on the connection, and the send read `timeout` ("Kannel may
    have sent it"): never tried again, and the journal said the phone may have the code. No request left:
    `unreachable`, which is tried again."""
    with _unanswered_port() as port, pytest.raises(DeliveryFailed) as caught:
        await gateways(url=f"http://127.0.0.1:{port}", timeout=0.5).send(SmsMessage(PHONE, _text(""), "c1"))
    assert caught.value.reason == "unreachable"


async def test_an_answer_that_echoes_the_request_is_not_logged(
    gateways: Gateways, caplog: pytest.LogCaptureFixture
):
    """Found from outside: a proxy's 403 page echoing the request line put the password in the INFO line
    of the refusal, and a line break in it forged a log line. Only Kannel's own words are shown."""
    caplog.set_level(logging.INFO)
    password = secrets.token_hex(8)

    async def echo(writer: asyncio.StreamWriter) -> None:
        body = f"Bad request: GET /cgi-bin/sendsms?username=u&password={password}\rforged".encode()
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async with await _serve(echo) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(DeliveryFailed) as caught:
            await gateways(url=f"http://127.0.0.1:{port}", password=password).send(
                SmsMessage(PHONE, _text(""), "c1")
            )
    assert caught.value.reason == "refused"
    said = [record.getMessage() for record in caplog.records if record.name == "sesame.sms"]
    assert said
    assert not [line for line in said if password in line or "\r" in line]
    assert "not shown" in said[-1]


async def test_kannels_own_words_are_logged(gateways: Gateways, caplog: pytest.LogCaptureFixture):
    """Real Kannel's refusal of a wrong password reads in the log as Kannel said it."""
    caplog.set_level(logging.INFO)
    with pytest.raises(DeliveryFailed):
        await gateways(password=secrets.token_hex(8)).send(SmsMessage(PHONE, _text(""), "c1"))
    assert [r for r in caplog.records if "Authorization failed for sendsms" in r.getMessage()]


async def test_no_cookie_is_kept(gateways: Gateways):
    """Found from outside: a peer that set a 3 KB cookie with each answer grew every request's head, for the
    life of the worker, until every SMS failed. No cookie is kept or sent."""
    heads: list[bytes] = []

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                cookie = f"s{len(heads)}={'x' * 3000}; Path=/"
                writer.write(
                    b"HTTP/1.1 202 Accepted\r\nSet-Cookie: %s\r\nContent-Length: 24\r\n\r\n"
                    b"0: Accepted for delivery" % cookie.encode()
                )
                await writer.drain()
        writer.close()

    async with await asyncio.start_server(connected, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        kannel = gateways(url=f"http://127.0.0.1:{port}")
        for n in range(3):
            await kannel.send(SmsMessage(PHONE, _text(""), f"c{n}"))
    assert len(heads) == 3
    assert not [head for head in heads if b"cookie:" in head.lower()]


async def test_an_endless_answer_is_read_no_further_than_the_cap(gateways: Gateways):
    """An answer that never ends is cut at ANSWER_LIMIT bytes: send returns instead of reading on."""

    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\n\r\n0: Accepted for delivery\n")
        for _ in range(10_000):
            writer.write(b"x" * ANSWER_LIMIT)
            await writer.drain()

    async with await _serve(endless) as server:
        port = server.sockets[0].getsockname()[1]
        started = time.monotonic()
        sent = await gateways(url=f"http://127.0.0.1:{port}").send(SmsMessage(PHONE, _text(""), "c1"))
        assert sent.provider_ref
        assert time.monotonic() - started < 2.0


async def test_a_missing_receiver_is_the_numbers_fault(gateways: Gateways):
    """Real Kannel answers 400 `Missing receiver number`: reason bad_number (no retry, next provider)."""
    with pytest.raises(DeliveryFailed) as caught:
        await gateways().send(SmsMessage("", _text(""), "c1"))
    assert caught.value.reason == "bad_number"


async def test_a_refused_account_is_refused(gateways: Gateways):
    """Real Kannel answers 403 to a wrong password: reason refused."""
    with pytest.raises(DeliveryFailed) as caught:
        await gateways(password=secrets.token_hex(8)).send(SmsMessage(PHONE, _text(""), "c1"))
    assert caught.value.reason == "refused"


async def test_a_temporary_refusal_is_retried_at_the_same_kannel(gateways: Gateways):
    """503 then 202 from a gateway: the failover's policy asks it again after a jittered pause."""
    answers = [
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 15\r\n\r\nSending failed.",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 24\r\n\r\n0: Accepted for delivery",
    ]

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(answers.pop(0))
        await writer.drain()

    waits: list[float] = []

    async def recorded(seconds: float) -> None:
        waits.append(seconds)

    async with await _serve(answer) as server:
        port = server.sockets[0].getsockname()[1]
        kannel = gateways(url=f"http://127.0.0.1:{port}")
        failover = FailoverSmsGateway([Provider("kannel", kannel)], Reliability(sleep=recorded))
        sent = await failover.send(SmsMessage(PHONE, _text(""), "c1", reference="out-7"))
    assert (sent.provider_ref, len(waits), answers) == ("kannel-out-7", 1, [])


@pytest.mark.parametrize(
    ("status", "text", "reason"),
    [
        (503, "Sending failed.", "unavailable"),
        (504, "<h1>504 Gateway Time-out</h1>", "timeout"),  # a proxy's: Kannel may have taken it
        (429, "", "throttled"),
        (400, "Missing receiver number, rejected", "bad_number"),
        (400, "Invalid charset", "bad_content"),
        (403, "Authorization failed for sendsms", "refused"),
        (202, "OK", "lost"),  # a 2xx not in Kannel's words: something took it (decision 0155)
    ],
)
def test_kannel_answers_are_classified(status: int, text: str, reason: str):
    """Each class of Kannel answer gets its kind of failure."""
    assert refusal(status, text) == reason

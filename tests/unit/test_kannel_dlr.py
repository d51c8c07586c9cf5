"""Kannel's delivery reports: status bits to delivery states, and the checks before anything is written."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from http import HTTPStatus
from urllib.parse import urlencode

import pytest

from sesame.clients.kannel_dlr import (
    KannelDeliveryReports,
    MalformedReport,
    delivery_state,
    parse_report,
    report_token,
)
from sesame.clients.sms_breaker import BreakerState
from sesame.server.domain.model import DeliveryState, RequestContext
from tests import factories
from tests.fakes.clock import FixedClock
from tests.fakes.state import MemoryState, memory_state

TOKEN = "t" * 43
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (1, DeliveryState.DELIVERED),  # delivered to the phone
        (2, DeliveryState.FAILED),  # not delivered to the phone
        (16, DeliveryState.FAILED),  # rejected by the SMSC
        (8, DeliveryState.SENT),  # accepted by the SMSC
        (4, DeliveryState.SENT),  # buffered by the SMSC
        (9, DeliveryState.DELIVERED),  # bits together: the most final one tells
        (18, DeliveryState.FAILED),
        (12, DeliveryState.SENT),
    ],
)
def test_kannel_status_bits_map_to_delivery_states(status: int, state: DeliveryState):
    """1 is DELIVERED, 2 and 16 FAILED, 4 and 8 SENT; with several bits, delivered beats failed beats sent."""
    assert delivery_state(status) is state


@pytest.mark.parametrize("status", [0, 32, 64, 33, 999])
def test_a_status_without_a_known_bit_is_malformed(status: int):
    """0 and bits above 16 mean nothing in a Kannel report, beside known bits too (999 holds bit 1: it was
    recorded as delivered)."""
    with pytest.raises(MalformedReport):
        delivery_state(status)


def _fields(**changes: str) -> dict[str, list[str]]:
    fields = {"challenge": "00ff.k1.d6", "ref": "abc123", "status": "8", "token": TOKEN} | changes
    return {name: [value] for name, value in fields.items()}


def test_a_report_is_parsed():
    """The challenge, reference, raw status and its state come out of the query fields."""
    report = parse_report(_fields())
    assert (report.challenge_id, report.provider_ref, report.status, report.state) == (
        "00ff.k1.d6",
        "abc123",
        8,
        DeliveryState.SENT,
    )


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("303d8b2e-8081-436f-8460-9a780cb3b8fe", "303d8b2e-8081-436f-8460-9a780cb3b8fe"),  # fake SMSC
        ("3e8", "3e8"),  # an SMPP SMSC's id
        ("", ""),  # status 8: the SMSC gave none yet
        ("id with spaces", ""),  # not an id any SMSC gives: dropped, not the report
    ],
)
def test_the_smscs_message_id_comes_with_the_report(given: str, kept: str):
    """`message_id` (Kannel's `%F`) is read when it looks like an id, dropped otherwise, never required."""
    assert parse_report(_fields(message_id=given)).message_id == kept
    assert parse_report(_fields()).message_id == ""


@pytest.mark.parametrize(
    "fields",
    [
        {"challenge": ["a"], "ref": ["b"], "token": [TOKEN]},  # no status
        _fields() | {"message_id": ["a", "b"]},  # twice
        _fields() | {"ref": ["a", "b"]},  # twice
        _fields(challenge="id with spaces"),
        _fields(ref="x" * 129),
        _fields(status="8.0"),
        _fields(status="1234"),
    ],
)
def test_a_report_that_we_did_not_shape_is_malformed(fields: dict[str, list[str]]):
    """A missing or repeated field, a foreign id or a status that is not a small number is refused."""
    with pytest.raises(MalformedReport):
        parse_report(fields)


@pytest.fixture
async def store() -> MemoryState:
    """An in-memory store with one open challenge, `00010203...0f.k1.d6.u<t>`."""
    memory = memory_state()
    challenge = await factories.its_user_enrolled(memory, factories.a_challenge(NOW))
    await memory.challenges.open_challenge(challenge, RequestContext())
    return memory


async def _receive(store: MemoryState, **changes: str) -> HTTPStatus:
    query = {"challenge": factories.a_challenge(NOW).challenge_id, "ref": "r1", "status": "1"} | changes
    if "token" not in query:  # the one the dlr-url of that challenge and reference carries
        query["token"] = report_token(TOKEN, query["challenge"], query["ref"])
    reports = KannelDeliveryReports(TOKEN, store.challenges, FixedClock(NOW))
    return (await reports.receive(urlencode(query))).status


async def test_a_token_is_its_messages_own(store: MemoryState):
    """The secret itself, or the token of another reference or challenge, answers 403 and records nothing:
    a dlr-url read in Kannel's logs authenticates no report on another message."""
    challenge_id = factories.a_challenge(NOW).challenge_id
    assert await _receive(store, token=TOKEN) == HTTPStatus.FORBIDDEN
    assert await _receive(store, token=report_token(TOKEN, challenge_id, "r2")) == HTTPStatus.FORBIDDEN
    assert await _receive(store, token=report_token(TOKEN, "00ff.k1.d6", "r1")) == HTTPStatus.FORBIDDEN
    assert (await store.challenges.get_challenge(challenge_id)).delivery is not DeliveryState.DELIVERED


async def test_the_token_is_checked_before_the_report(store: MemoryState):
    """A wrong token answers 403 even when the rest of the report is malformed."""
    assert await _receive(store, token="x" * 43, status="nonsense") == HTTPStatus.FORBIDDEN


async def test_a_good_report_is_recorded(store: MemoryState):
    """The right token and a known challenge answer 200 and record the state."""
    assert await _receive(store) == HTTPStatus.OK
    challenge_id = factories.a_challenge(NOW).challenge_id
    assert (await store.challenges.get_challenge(challenge_id)).delivery is DeliveryState.DELIVERED


async def test_a_reports_smsc_message_id_is_journaled(store: MemoryState):
    """The SMSC's id a report carries is journaled with the delivery it reports."""
    assert await _receive(store, message_id="3e8") == HTTPStatus.OK
    challenge_id = factories.a_challenge(NOW).challenge_id
    entry = (await store.journal.challenge_journal(challenge_id))[-1]
    assert (entry["event"], entry["provider_ref"], entry["provider_id"]) == (
        "challenge.delivery",
        "r1",
        "3e8",
    )


async def test_an_unparsable_query_is_400(store: MemoryState):
    """A query that is not name=value pairs answers 400."""
    reports = KannelDeliveryReports(TOKEN, store.challenges, FixedClock(NOW))
    assert (await reports.receive("garbage")).status == HTTPStatus.BAD_REQUEST


def test_the_token_stays_out_of_the_repr(store: MemoryState):
    """A logged route never shows its token."""
    assert TOKEN not in repr(KannelDeliveryReports(TOKEN, store.challenges, FixedClock(NOW)))


async def test_an_empty_token_set_authenticates_no_report(store: MemoryState):
    """A listener given an empty token (the settings refuse one since decision 0080) answers 403 to
    `token=`, which matched it: a forged report was recorded and the challenge read DELIVERED."""
    query = {"challenge": factories.a_challenge(NOW).challenge_id, "ref": "r1", "status": "1", "token": ""}
    reports = KannelDeliveryReports("", store.challenges, FixedClock(NOW))
    assert (await reports.receive(urlencode(query))).status == HTTPStatus.FORBIDDEN
    challenge_id = factories.a_challenge(NOW).challenge_id
    assert (await store.challenges.get_challenge(challenge_id)).delivery is not DeliveryState.DELIVERED


class _Reported:
    """An observer that keeps the reports it is told of (the metrics' side)."""

    def __init__(self) -> None:
        self.states: list[DeliveryState] = []

    def attempted(self, provider: str, outcome: str) -> None:
        pass

    def breaker_changed(self, provider: str, state: BreakerState) -> None:
        pass

    def reported(self, provider: str, state: DeliveryState) -> None:
        self.states.append(state)

    def bind_changed(self, provider: str, bound: bool) -> None:  # noqa: FBT001 (the observer's event)
        pass


async def test_a_replayed_report_is_counted_and_logged_once(
    store: MemoryState, caplog: pytest.LogCaptureFixture
):
    """One dlr-url replayed 50 times over statuses 8, 1, 2, 16, 4: the observer hears the two reports that
    moved the message (sent, delivered), and each state's reports that moved nothing write one line."""
    caplog.set_level(logging.INFO, "sesame.sms")
    observer = _Reported()
    reports = KannelDeliveryReports(TOKEN, store.challenges, FixedClock(NOW), observer)
    challenge_id = factories.a_challenge(NOW).challenge_id
    query = {"challenge": challenge_id, "ref": "r1", "token": report_token(TOKEN, challenge_id, "r1")}
    for n in range(50):
        reply = await reports.receive(urlencode(query | {"status": ("8", "1", "2", "16", "4")[n % 5]}))
        assert reply.status == HTTPStatus.OK
    assert observer.states == [DeliveryState.SENT, DeliveryState.DELIVERED]
    lines = [r.getMessage().partition(", ")[2] for r in caplog.records if r.name == "sesame.sms"]
    assert sorted(lines) == [
        "a delivered report that moved nothing (its message was there already)",
        "a failed report that moved nothing (its message was there already)",
        "a sent report that moved nothing (its message was there already)",
        "recorded as a delivered report",
        "recorded as a sent report",
    ]
